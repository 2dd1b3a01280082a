//! `GET /people/me`: who a token belongs to. The agent asks it once with the
//! personal token a person just approved (the device grant), so the "done"
//! notice can say who approved; best effort, never a condition.

use super::{ApiError, HttpApi, TransientReason};
use crate::secret::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Me {
    #[serde(default)]
    emails: Vec<String>,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
}

#[allow(async_fn_in_trait)]
pub trait PeopleApi {
    /// The token owner's first email, else their display name.
    async fn who_am_i(&self, token: &SecretString) -> Result<String, ApiError>;
}

impl PeopleApi for HttpApi {
    async fn who_am_i(&self, token: &SecretString) -> Result<String, ApiError> {
        let url = self.url("/people/me");
        let bytes = self
            .send("GET /people/me", |c| {
                c.get(&url)
                    .bearer_auth(token.expose_secret())
                    .header("accept", "application/json")
            })
            .await?;
        let bad = |why: String| ApiError::Transient {
            reason: TransientReason::BadResponse(why),
            body: None,
            attempts: 1,
        };
        let me: Me = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "the people/me answer is not the expected JSON ({e})"
            ))
        })?;
        me.emails
            .into_iter()
            .chain(me.display_name)
            .map(|s| s.trim().to_string())
            .find(|s| !s.is_empty())
            .ok_or_else(|| bad("the people/me answer names nobody".into()))
    }
}
