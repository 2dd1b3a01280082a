//! The config file (`token-config.json`): reading it into typed, validated
//! fields, and writing renewed personal/integration tokens back into it with
//! every other key (known or not) kept in place.
//!
//! Three layouts are read. The contract's own:
//! `tokenManager.integration.{clientId, clientSecret, refreshToken}`; and the
//! two the original Python tool used later, flat under `tokenManager` as
//! `clientId`/`clientSecret`/`refreshToken` or as
//! `oauthClientId`/`oauthClientSecret`/`oauthRefreshToken`. A file is written
//! back in the layout it was read in, so nobody has to migrate.

use crate::clock;
use crate::secret::{ExposeSecret, SecretString, secret};
use jiff::Timestamp;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a field has no usable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// The key is not in the file.
    Missing,
    /// The key is there with an empty (or all-blank) string.
    Empty,
    /// The key still holds the template's placeholder (`your_...`).
    Placeholder,
}

impl fmt::Display for Absence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Absence::Missing => "is missing",
            Absence::Empty => "is empty",
            Absence::Placeholder => "is not filled in (it still holds the template's placeholder)",
        })
    }
}

/// A config value that may be absent, remembering its dotted key for messages.
#[derive(Debug, Clone)]
pub struct Field<T> {
    /// Dotted key as it appears in the file, e.g. `serviceApp.clientId`.
    pub key: String,
    /// The value, or why there is none.
    pub value: Result<T, Absence>,
}

impl<T> Field<T> {
    /// The value when present.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref().ok()
    }

    /// The value, or a config error naming the key and the file.
    pub fn require(&self, path: &Path) -> Result<&T, ConfigError> {
        self.value.as_ref().map_err(|absence| ConfigError::Field {
            path: path.to_path_buf(),
            key: self.key.clone(),
            absence: *absence,
        })
    }

    /// True when a value is present.
    pub fn is_set(&self) -> bool {
        self.value.is_ok()
    }
}

/// Where the integration keys live in this file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationLayout {
    /// `tokenManager.integration.{clientId, clientSecret, refreshToken}`.
    Nested,
    /// `tokenManager.{clientId, clientSecret, refreshToken}` (older tool).
    FlatPlain,
    /// `tokenManager.{oauthClientId, oauthClientSecret, oauthRefreshToken}`.
    FlatOauth,
}

impl IntegrationLayout {
    fn keys(self) -> [&'static str; 4] {
        match self {
            IntegrationLayout::Nested => [
                "clientId",
                "clientSecret",
                "refreshToken",
                "refreshTokenExpiresAt",
            ],
            IntegrationLayout::FlatPlain => [
                "clientId",
                "clientSecret",
                "refreshToken",
                "refreshTokenExpiresAt",
            ],
            IntegrationLayout::FlatOauth => [
                "oauthClientId",
                "oauthClientSecret",
                "oauthRefreshToken",
                "oauthRefreshTokenExpiresAt",
            ],
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            IntegrationLayout::Nested => "tokenManager.integration.",
            _ => "tokenManager.",
        }
    }
}

/// `serviceApp` section.
#[derive(Debug, Clone)]
pub struct ServiceApp {
    pub app_id: Field<String>,
    pub client_id: Field<String>,
    pub client_secret: Field<SecretString>,
    pub target_org_id: Field<String>,
}

impl ServiceApp {
    /// Ok when all four fields are set; otherwise one error naming every
    /// field that is missing, empty or a placeholder (so one run shows all
    /// there is to fix, not one field per run).
    pub fn require_complete(&self, path: &Path) -> Result<(), ConfigError> {
        let gaps: Vec<(String, Absence)> = [
            (&self.app_id.key, self.app_id.value.as_ref().err()),
            (&self.client_id.key, self.client_id.value.as_ref().err()),
            (
                &self.client_secret.key,
                self.client_secret.value.as_ref().err(),
            ),
            (
                &self.target_org_id.key,
                self.target_org_id.value.as_ref().err(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, a)| a.map(|a| (k.clone(), *a)))
        .collect();
        match gaps.len() {
            0 => Ok(()),
            _ => Err(ConfigError::Fields {
                path: path.to_path_buf(),
                fields: gaps,
            }),
        }
    }

    /// Ok when the client id and secret (all level 1 needs) are set;
    /// otherwise the error names every unset `serviceApp` field.
    pub fn require_client(&self, path: &Path) -> Result<(), ConfigError> {
        if self.client_id.is_set() && self.client_secret.is_set() {
            Ok(())
        } else {
            self.require_complete(path)
        }
    }
}

/// The token-manager integration (OAuth client that renews the personal token).
#[derive(Debug, Clone)]
pub struct Integration {
    pub layout: IntegrationLayout,
    pub client_id: Field<String>,
    pub client_secret: Field<SecretString>,
    pub refresh_token: Field<SecretString>,
    pub refresh_expires_at: Option<Timestamp>,
}

impl Integration {
    /// All three values present: level 3 can run.
    pub fn is_usable(&self) -> bool {
        self.client_id.is_set() && self.client_secret.is_set() && self.refresh_token.is_set()
    }

    /// The first field that keeps level 3 from running, for notes.
    pub fn first_gap(&self) -> Option<String> {
        [
            (&self.client_id.key, self.client_id.value.as_ref().err()),
            (
                &self.client_secret.key,
                self.client_secret.value.as_ref().err(),
            ),
            (
                &self.refresh_token.key,
                self.refresh_token.value.as_ref().err(),
            ),
        ]
        .into_iter()
        .find_map(|(k, a)| a.map(|a| format!("`{k}` {a}")))
    }
}

/// The parsed config file. Its `Debug` leaves out the raw document, which
/// holds the secrets in clear.
#[derive(Clone)]
pub struct Config {
    /// Absolute path it was read from.
    pub path: PathBuf,
    doc: Map<String, Value>,
    indent: usize,
    /// `apiBaseUrl`, when set.
    pub api_base_url: Option<String>,
    pub service_app: ServiceApp,
    /// `tokenManager.personalAccessToken`.
    pub personal_access_token: Field<SecretString>,
    /// `tokenManager.personalAccessTokenExpiresAt` (written by this program).
    pub personal_expires_at: Option<Timestamp>,
    /// The integration, when the file has one in any layout.
    pub integration: Option<Integration>,
    /// Things a person should know about how the file was read.
    pub notes: Vec<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("api_base_url", &self.api_base_url)
            .field("service_app", &self.service_app)
            .field("personal_access_token", &self.personal_access_token)
            .field("personal_expires_at", &self.personal_expires_at)
            .field("integration", &self.integration)
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

/// What level 3 or `setup-oauth` renewed, to be written into the file.
#[derive(Debug)]
pub struct PersonalUpdate {
    pub personal_access_token: SecretString,
    pub personal_expires_at: Option<Timestamp>,
    /// `None` keeps the stored integration refresh token.
    pub integration_refresh_token: Option<SecretString>,
    pub integration_refresh_expires_at: Option<Timestamp>,
    /// For `setup-oauth`: store these client credentials too (they are the
    /// ones the tokens were issued to).
    pub integration_client: Option<(String, SecretString)>,
}

/// Errors reading or using the config file (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} not found", path.display())]
    NotFound { path: PathBuf },
    #[error("config file {} could not be read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {} is a directory, not a file", path.display())]
    IsDirectory { path: PathBuf },
    #[error("config file {} is not valid JSON: {message} at line {line}, column {column}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config file {}: {what} must be a JSON object", path.display())]
    NotObject { path: PathBuf, what: String },
    #[error("config file {}: `{key}` must be a string", path.display())]
    NotString { path: PathBuf, key: String },
    #[error("config file {}: `{key}` {absence}", path.display())]
    Field {
        path: PathBuf,
        key: String,
        absence: Absence,
    },
    #[error("config file {}: {}", path.display(), fields.iter().map(|(k, a)| format!("`{k}` {a}")).collect::<Vec<_>>().join("; "))]
    Fields {
        path: PathBuf,
        fields: Vec<(String, Absence)>,
    },
    #[error("config file {}: `apiBaseUrl` is not an http(s) URL", path.display())]
    BadApiBase { path: PathBuf },
}

impl ConfigError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            ConfigError::NotFound { .. } => "copy token-config.json.template to that path and fill in `serviceApp` (and `tokenManager`), or point --config / WEBEX_TOKEN_CONFIG at your file".into(),
            ConfigError::Json { .. } | ConfigError::NotObject { .. } | ConfigError::NotString { .. } => {
                "fix the file by hand (compare it with token-config.json.template); nothing was changed".into()
            }
            ConfigError::Field { key, .. } => field_hint(key),
            ConfigError::Fields { fields, .. } => match fields.first() {
                Some((key, _)) if fields.len() == 1 => field_hint(key),
                _ => "fill them in from your service app's page on developer.webex.com (My Webex Apps → your service app); targetOrgId is the org whose Full Admin authorized it".into(),
            },
            ConfigError::BadApiBase { .. } => "use e.g. https://webexapis.com/v1, or remove the key".into(),
            ConfigError::Unreadable { .. } | ConfigError::IsDirectory { .. } => {
                "check the path and its permissions".into()
            }
        }
    }
}

fn field_hint(key: &str) -> String {
    let k = key.rsplit('.').next().unwrap_or(key);
    if key.starts_with("serviceApp.") {
        match k {
            "targetOrgId" => "set it to the id of the org whose Full Admin authorized the service app (Control Hub, or the service app's page on developer.webex.com lists authorizations)".into(),
            _ => format!("set `{key}` from your service app's page on developer.webex.com (My Webex Apps → your service app)"),
        }
    } else if key.contains("personalAccessToken") {
        "paste a personal access token with scope spark:applications_token, or run `webex-token setup-oauth` so the integration keeps one renewed".into()
    } else {
        format!(
            "set `{key}` from your token-manager integration's page on developer.webex.com, then run `webex-token setup-oauth`"
        )
    }
}

/// True for values copied unchanged from the template, e.g. `your_client_id`.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.starts_with("your_") || v.starts_with("your-") || v.starts_with("<your") || v == "changeme"
}

impl Config {
    /// Reads and parses the config file at `path` (already absolute).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound { path: path.into() });
            }
            Err(_) if path.is_dir() => return Err(ConfigError::IsDirectory { path: path.into() }),
            Err(e) => {
                return Err(ConfigError::Unreadable {
                    path: path.into(),
                    source: e,
                });
            }
        };
        Self::parse(&bytes, path)
    }

    /// Parses config bytes; `path` names the file in messages.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Config, ConfigError> {
        let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
            .map_err(|e| {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1;
                ConfigError::Json {
                    path: path.into(),
                    line,
                    column: 0,
                    message: "bytes that are not UTF-8".into(),
                }
            })?;
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            message: json_message(&e),
        })?;
        let Value::Object(doc) = value else {
            return Err(ConfigError::NotObject {
                path: path.into(),
                what: "the top level".into(),
            });
        };
        let indent = detect_indent(text);
        let mut notes = Vec::new();

        let sa = section(&doc, "serviceApp", path)?;
        let tm = section(&doc, "tokenManager", path)?;
        let service_app = ServiceApp {
            app_id: plain(sa, "serviceApp.", "appId", path)?,
            client_id: plain(sa, "serviceApp.", "clientId", path)?,
            client_secret: secret_field(sa, "serviceApp.", "clientSecret", path)?,
            target_org_id: plain(sa, "serviceApp.", "targetOrgId", path)?,
        };
        let personal_access_token = secret_field(tm, "tokenManager.", "personalAccessToken", path)?;
        let personal_expires_at = time_field(tm, "personalAccessTokenExpiresAt");

        let layout = match tm {
            Some(tm) if tm.contains_key("integration") => Some(IntegrationLayout::Nested),
            Some(tm)
                if ["oauthClientId", "oauthClientSecret", "oauthRefreshToken"]
                    .iter()
                    .any(|k| tm.contains_key(*k)) =>
            {
                Some(IntegrationLayout::FlatOauth)
            }
            Some(tm) if tm.contains_key("clientId") || tm.contains_key("refreshToken") => {
                Some(IntegrationLayout::FlatPlain)
            }
            _ => None,
        };
        let integration = match layout {
            None => None,
            Some(layout) => {
                let obj = if layout == IntegrationLayout::Nested {
                    match tm.and_then(|t| t.get("integration")) {
                        Some(Value::Object(o)) => Some(o),
                        Some(Value::Null) => None,
                        Some(_) => {
                            return Err(ConfigError::NotObject {
                                path: path.into(),
                                what: "`tokenManager.integration`".into(),
                            });
                        }
                        None => None,
                    }
                } else {
                    notes.push(format!(
                        "read the integration from the older flat layout (`{}{}`…); it keeps working, and renewed tokens are written back in that layout",
                        layout.prefix(),
                        layout.keys()[0]
                    ));
                    tm
                };
                let [id, sec, rt, rexp] = layout.keys();
                let prefix = layout.prefix();
                Some(Integration {
                    layout,
                    client_id: plain(obj, prefix, id, path)?,
                    client_secret: secret_field(obj, prefix, sec, path)?,
                    refresh_token: secret_field(obj, prefix, rt, path)?,
                    refresh_expires_at: time_field(obj, rexp),
                })
            }
        };
        let api_base_url = match doc.get("apiBaseUrl") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => {
                if !(s.starts_with("http://") || s.starts_with("https://")) {
                    return Err(ConfigError::BadApiBase { path: path.into() });
                }
                Some(s.trim().to_string())
            }
            Some(_) => {
                return Err(ConfigError::NotString {
                    path: path.into(),
                    key: "apiBaseUrl".into(),
                });
            }
        };
        Ok(Config {
            path: path.into(),
            doc,
            indent,
            api_base_url,
            service_app,
            personal_access_token,
            personal_expires_at,
            integration,
            notes,
        })
    }

    /// The integration when all its fields are present.
    pub fn usable_integration(&self) -> Option<&Integration> {
        self.integration.as_ref().filter(|i| i.is_usable())
    }

    /// The file's new bytes with `update` applied; every other key kept in
    /// its place. The only place where config secrets are exposed for writing.
    pub fn render_with(&self, update: &PersonalUpdate) -> Vec<u8> {
        let mut doc = self.doc.clone();
        let tm = doc
            .entry("tokenManager")
            .or_insert_with(|| Value::Object(Map::new()));
        if !tm.is_object() {
            *tm = Value::Object(Map::new());
        }
        let tm = tm.as_object_mut().expect("made an object above");
        tm.insert(
            "personalAccessToken".into(),
            Value::String(update.personal_access_token.expose_secret().to_string()),
        );
        set_time(
            tm,
            "personalAccessTokenExpiresAt",
            update.personal_expires_at,
        );

        let layout = self
            .integration
            .as_ref()
            .map(|i| i.layout)
            .unwrap_or(IntegrationLayout::Nested);
        let [id_key, secret_key, rt_key, rexp_key] = layout.keys();
        let target: &mut Map<String, Value> = if layout == IntegrationLayout::Nested {
            let integ = tm
                .entry("integration")
                .or_insert_with(|| Value::Object(Map::new()));
            if !integ.is_object() {
                *integ = Value::Object(Map::new());
            }
            integ.as_object_mut().expect("made an object above")
        } else {
            tm
        };
        if let Some((id, sec)) = &update.integration_client {
            target.insert(id_key.into(), Value::String(id.clone()));
            target.insert(
                secret_key.into(),
                Value::String(sec.expose_secret().to_string()),
            );
        }
        if let Some(rt) = &update.integration_refresh_token {
            target.insert(rt_key.into(), Value::String(rt.expose_secret().to_string()));
            set_time(target, rexp_key, update.integration_refresh_expires_at);
        } else if update.integration_refresh_expires_at.is_some() {
            set_time(target, rexp_key, update.integration_refresh_expires_at);
        }
        render(&Value::Object(doc), self.indent)
    }
}

fn set_time(obj: &mut Map<String, Value>, key: &str, ts: Option<Timestamp>) {
    match ts {
        Some(ts) => {
            obj.insert(key.into(), Value::String(clock::format_utc(ts)));
        }
        None => {
            obj.remove(key);
        }
    }
}

fn render(doc: &Value, indent: usize) -> Vec<u8> {
    use serde::Serialize;
    let indent_bytes = vec![b' '; indent.clamp(1, 8)];
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(&indent_bytes);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    doc.serialize(&mut ser)
        .expect("a JSON value always serializes");
    out.push(b'\n');
    out
}

/// The indentation width the file already uses (2 when it cannot tell), so a
/// rewrite does not reformat a hand-kept file more than it must.
fn detect_indent(text: &str) -> usize {
    text.lines()
        .skip(1)
        .find_map(|l| {
            let n = l.len() - l.trim_start_matches(' ').len();
            (n > 0 && !l.trim().is_empty()).then_some(n)
        })
        .unwrap_or(2)
}

fn json_message(e: &serde_json::Error) -> String {
    // serde_json appends " at line X column Y"; we print those ourselves.
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn section<'a>(
    doc: &'a Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Option<&'a Map<String, Value>>, ConfigError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(ConfigError::NotObject {
            path: path.into(),
            what: format!("`{key}`"),
        }),
    }
}

fn raw_string(
    obj: Option<&Map<String, Value>>,
    prefix: &str,
    key: &str,
    path: &Path,
) -> Result<Result<String, Absence>, ConfigError> {
    match obj.and_then(|o| o.get(key)) {
        None | Some(Value::Null) => Ok(Err(Absence::Missing)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Err(Absence::Empty)),
        Some(Value::String(s)) if is_placeholder(s) => Ok(Err(Absence::Placeholder)),
        Some(Value::String(s)) => Ok(Ok(s.trim().to_string())),
        Some(_) => Err(ConfigError::NotString {
            path: path.into(),
            key: format!("{prefix}{key}"),
        }),
    }
}

fn plain(
    obj: Option<&Map<String, Value>>,
    prefix: &str,
    key: &str,
    path: &Path,
) -> Result<Field<String>, ConfigError> {
    Ok(Field {
        key: format!("{prefix}{key}"),
        value: raw_string(obj, prefix, key, path)?,
    })
}

fn secret_field(
    obj: Option<&Map<String, Value>>,
    prefix: &str,
    key: &str,
    path: &Path,
) -> Result<Field<SecretString>, ConfigError> {
    Ok(Field {
        key: format!("{prefix}{key}"),
        value: raw_string(obj, prefix, key, path)?.map(secret),
    })
}

fn time_field(obj: Option<&Map<String, Value>>, key: &str) -> Option<Timestamp> {
    obj.and_then(|o| o.get(key))
        .and_then(Value::as_str)
        .and_then(clock::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/abs/token-config.json")
    }

    const FULL: &str = r#"{
  "comment": "kept",
  "serviceApp": {
    "appId": "app-1",
    "clientId": "sa-client",
    "clientSecret": "sa-secret",
    "targetOrgId": "org-1",
    "extra": 42
  },
  "tokenManager": {
    "personalAccessToken": "pat-1",
    "integration": {
      "clientId": "int-client",
      "clientSecret": "int-secret",
      "refreshToken": "int-refresh"
    }
  },
  "zzz": [1, 2]
}"#;

    #[test]
    fn reads_the_contract_layout() {
        let c = Config::parse(FULL.as_bytes(), &p()).unwrap();
        assert_eq!(c.service_app.app_id.get().unwrap(), "app-1");
        assert_eq!(
            c.service_app.client_secret.get().unwrap().expose_secret(),
            "sa-secret"
        );
        assert_eq!(
            c.personal_access_token.get().unwrap().expose_secret(),
            "pat-1"
        );
        let i = c.usable_integration().unwrap();
        assert_eq!(i.layout, IntegrationLayout::Nested);
        assert_eq!(
            i.refresh_token.get().unwrap().expose_secret(),
            "int-refresh"
        );
        assert!(c.notes.is_empty());
        assert!(!format!("{c:?}").contains("sa-secret"));
        assert!(!format!("{c:?}").contains("pat-1"));
    }

    #[test]
    fn reads_flat_layouts_with_a_note() {
        let flat = r#"{"serviceApp":{},"tokenManager":{"personalAccessToken":"p","clientId":"c","clientSecret":"s","refreshToken":"r"}}"#;
        let c = Config::parse(flat.as_bytes(), &p()).unwrap();
        let i = c.usable_integration().unwrap();
        assert_eq!(i.layout, IntegrationLayout::FlatPlain);
        assert_eq!(i.refresh_token.key, "tokenManager.refreshToken");
        assert_eq!(c.notes.len(), 1);

        let oauth = r#"{"tokenManager":{"oauthClientId":"c","oauthClientSecret":"s","oauthRefreshToken":"r"}}"#;
        let c = Config::parse(oauth.as_bytes(), &p()).unwrap();
        let i = c.usable_integration().unwrap();
        assert_eq!(i.layout, IntegrationLayout::FlatOauth);
        assert_eq!(i.client_id.get().unwrap(), "c");
    }

    #[test]
    fn placeholders_are_not_values() {
        let t = r#"{"serviceApp":{"appId":"your_service_app_id","clientId":"","targetOrgId":"YOUR_ORG"},"tokenManager":{"personalAccessToken":"your_personal_access_token","integration":{"clientId":"your_integration_client_id","clientSecret":"x","refreshToken":"y"}}}"#;
        let c = Config::parse(t.as_bytes(), &p()).unwrap();
        assert_eq!(
            c.service_app.app_id.value.as_ref().unwrap_err(),
            &Absence::Placeholder
        );
        assert_eq!(
            c.service_app.client_id.value.as_ref().unwrap_err(),
            &Absence::Empty
        );
        assert_eq!(
            c.service_app.client_secret.value.as_ref().unwrap_err(),
            &Absence::Missing
        );
        assert!(c.usable_integration().is_none());
        assert!(
            c.integration
                .as_ref()
                .unwrap()
                .first_gap()
                .unwrap()
                .contains("tokenManager.integration.clientId")
        );
        let err = c.service_app.app_id.require(&c.path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/abs/token-config.json"), "{msg}");
        assert!(msg.contains("serviceApp.appId"), "{msg}");
        assert!(msg.contains("not filled in"), "{msg}");
        assert!(err.hint().contains("developer.webex.com"));
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let bad = "{\n  \"serviceApp\": {\n    \"appId\": \"x\",\n  }\n}";
        let err = Config::parse(bad.as_bytes(), &p()).unwrap_err();
        match &err {
            ConfigError::Json { line, column, .. } => {
                assert_eq!(*line, 4);
                assert!(*column > 0);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("line 4"));
        let not_obj = Config::parse(b"[1]", &p()).unwrap_err();
        assert!(matches!(not_obj, ConfigError::NotObject { .. }));
        let wrong_type = Config::parse(br#"{"serviceApp":{"clientId":5}}"#, &p()).unwrap_err();
        assert!(wrong_type.to_string().contains("serviceApp.clientId"));
    }

    #[test]
    fn rewrite_keeps_unknown_keys_and_order() {
        let c = Config::parse(FULL.as_bytes(), &p()).unwrap();
        let ts: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let out = c.render_with(&PersonalUpdate {
            personal_access_token: secret("pat-2"),
            personal_expires_at: Some(ts),
            integration_refresh_token: Some(secret("int-refresh-2")),
            integration_refresh_expires_at: Some(ts),
            integration_client: None,
        });
        let text = String::from_utf8(out).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["comment"], "kept");
        assert_eq!(v["serviceApp"]["extra"], 42);
        assert_eq!(v["zzz"], serde_json::json!([1, 2]));
        assert_eq!(v["tokenManager"]["personalAccessToken"], "pat-2");
        assert_eq!(
            v["tokenManager"]["personalAccessTokenExpiresAt"],
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            v["tokenManager"]["integration"]["refreshToken"],
            "int-refresh-2"
        );
        assert_eq!(
            v["tokenManager"]["integration"]["clientSecret"],
            "int-secret"
        );
        // Order kept: comment first, zzz last.
        assert!(text.find("comment").unwrap() < text.find("serviceApp").unwrap());
        assert!(text.find("tokenManager").unwrap() < text.find("zzz").unwrap());
        // Reads back.
        let again = Config::parse(text.as_bytes(), &p()).unwrap();
        assert_eq!(again.personal_expires_at, Some(ts));
    }

    #[test]
    fn rewrite_keeps_flat_layout_and_indent() {
        let flat = "{\n    \"tokenManager\": {\n        \"oauthClientId\": \"c\",\n        \"oauthClientSecret\": \"s\",\n        \"oauthRefreshToken\": \"r\"\n    }\n}";
        let c = Config::parse(flat.as_bytes(), &p()).unwrap();
        let out = String::from_utf8(c.render_with(&PersonalUpdate {
            personal_access_token: secret("pat"),
            personal_expires_at: None,
            integration_refresh_token: Some(secret("r2")),
            integration_refresh_expires_at: None,
            integration_client: None,
        }))
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["tokenManager"]["oauthRefreshToken"], "r2");
        assert!(v["tokenManager"].get("integration").is_none());
        assert!(out.contains("\n    \"tokenManager\""), "{out}");
    }
}
