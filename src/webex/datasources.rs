//! The BYODS data-source requests (`/dataSources`), behind a trait so the
//! command's "one refresh on a 401" rule can be unit-tested with a fake.
//!
//! Bodies come back as bytes: what a data source is (and what a bad answer
//! means for the exit code) is the command's business. Paging follows
//! `Link: <url>; rel="next"` (RFC 8288), but only to the API's own origin:
//! the bearer token goes with every page, so a link elsewhere is refused.

use super::{ApiError, HttpApi, urlencode_path};
use crate::secret::{ExposeSecret, SecretString};
use serde_json::Value;

/// Most pages one listing follows; a server that links on forever is
/// stopped there rather than looped on.
pub const MAX_PAGES: usize = 1000;

/// Where a page says the next one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextPage {
    /// An absolute URL on the API's origin.
    Url(String),
    /// A link that is not followed, and why.
    Refused(String),
}

/// One page of `GET /dataSources`.
#[derive(Debug)]
pub struct Page {
    pub body: Vec<u8>,
    pub next: Option<NextPage>,
}

/// The data-source calls, each with the service-app access token.
#[allow(async_fn_in_trait)]
pub trait DataSourcesApi {
    /// `GET /dataSources` (`next: None`) or the next page a previous page
    /// linked to.
    async fn list_page(&self, token: &SecretString, next: Option<&str>) -> Result<Page, ApiError>;
    /// `GET /dataSources/{id}`.
    async fn get(&self, token: &SecretString, id: &str) -> Result<Vec<u8>, ApiError>;
    /// `PUT /dataSources/{id}`; `body` is called for every try, so each try
    /// can carry a fresh nonce.
    async fn put(
        &self,
        token: &SecretString,
        id: &str,
        body: &dyn Fn() -> Value,
    ) -> Result<Vec<u8>, ApiError>;
    /// `POST /dataSources`.
    async fn register(&self, token: &SecretString, body: &Value) -> Result<Vec<u8>, ApiError>;
}

impl DataSourcesApi for HttpApi {
    async fn list_page(&self, token: &SecretString, next: Option<&str>) -> Result<Page, ApiError> {
        let first = self.url("/dataSources");
        let url = next.unwrap_or(&first);
        let what = if next.is_some() {
            "GET /dataSources (next page)"
        } else {
            "GET /dataSources"
        };
        let (body, link) = self
            .send_linked(what, |c| {
                c.get(url)
                    .bearer_auth(token.expose_secret())
                    .header("accept", "application/json")
            })
            .await?;
        let next = link
            .as_deref()
            .and_then(next_link)
            .map(|l| follow(&self.url(""), url, &l));
        Ok(Page { body, next })
    }

    async fn get(&self, token: &SecretString, id: &str) -> Result<Vec<u8>, ApiError> {
        let url = self.url(&format!("/dataSources/{}", urlencode_path(id)));
        self.send(&format!("GET /dataSources/{}", one_line(id)), |c| {
            c.get(&url)
                .bearer_auth(token.expose_secret())
                .header("accept", "application/json")
        })
        .await
    }

    async fn put(
        &self,
        token: &SecretString,
        id: &str,
        body: &dyn Fn() -> Value,
    ) -> Result<Vec<u8>, ApiError> {
        let url = self.url(&format!("/dataSources/{}", urlencode_path(id)));
        self.send(&format!("PUT /dataSources/{}", one_line(id)), |c| {
            c.put(&url)
                .bearer_auth(token.expose_secret())
                .header("accept", "application/json")
                .json(&body())
        })
        .await
    }

    async fn register(&self, token: &SecretString, body: &Value) -> Result<Vec<u8>, ApiError> {
        let url = self.url("/dataSources");
        self.send("POST /dataSources", |c| {
            c.post(&url)
                .bearer_auth(token.expose_secret())
                .header("accept", "application/json")
                .json(body)
        })
        .await
    }
}

/// The target of the `rel="next"` link in a `Link` header value (several
/// links may be comma-separated; `rel` may list several relation types).
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = &after[..close];
        let tail = &after[close + 1..];
        // The parameters run to the next link (`, <`) or the end.
        let params_end = tail.find('<').unwrap_or(tail.len());
        let params = &tail[..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = &tail[params_end..];
    }
    None
}

/// Resolves `link` against the page it came from and follows it only when
/// it stays on the API's origin (scheme, host and port of `base`).
fn follow(base: &str, page: &str, link: &str) -> NextPage {
    let resolved = reqwest::Url::parse(page).and_then(|p| p.join(link));
    let (Ok(base), Ok(next)) = (reqwest::Url::parse(base), resolved) else {
        return NextPage::Refused(format!(
            "the next-page link `{}` is not a URL",
            shorten(link)
        ));
    };
    if next.origin() != base.origin() {
        return NextPage::Refused(format!(
            "the next-page link points to {}, not to the API at {}; it is not followed (the access token would go with it)",
            next.origin().ascii_serialization(),
            base.origin().ascii_serialization()
        ));
    }
    NextPage::Url(next.to_string())
}

/// An id from the server as it may appear in a log line: no control
/// characters.
fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn shorten(s: &str) -> String {
    one_line(s).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_forms() {
        assert_eq!(
            next_link(r#"<http://h/v1/dataSources?max=2&cursor=abc>; rel="next""#).as_deref(),
            Some("http://h/v1/dataSources?max=2&cursor=abc")
        );
        assert_eq!(
            next_link(r#"<http://h/a>; rel="prev", <http://h/b>; rel="next last""#).as_deref(),
            Some("http://h/b")
        );
        assert_eq!(
            next_link("<http://h/b>; REL=Next").as_deref(),
            Some("http://h/b")
        );
        assert_eq!(next_link(r#"<http://h/a>; rel="prev""#), None);
        assert_eq!(next_link(r#"<http://h/a"#), None);
        assert_eq!(next_link(""), None);
        // `next` inside another parameter is not a relation.
        assert_eq!(next_link(r#"<http://h/a>; title="next""#), None);
    }

    #[test]
    fn only_the_api_origin_is_followed() {
        let base = "http://127.0.0.1:8080/v1";
        let page = "http://127.0.0.1:8080/v1/dataSources";
        assert_eq!(
            follow(base, page, "http://127.0.0.1:8080/v1/dataSources?cursor=x"),
            NextPage::Url("http://127.0.0.1:8080/v1/dataSources?cursor=x".into())
        );
        // Relative links resolve against the page they came from.
        assert_eq!(
            follow(base, page, "/v1/dataSources?cursor=y"),
            NextPage::Url("http://127.0.0.1:8080/v1/dataSources?cursor=y".into())
        );
        for other in [
            "http://127.0.0.1:8081/v1/dataSources?cursor=x",
            "https://127.0.0.1:8080/v1/dataSources?cursor=x",
            "http://evil.example/v1/dataSources",
            "//evil.example/v1/dataSources",
        ] {
            match follow(base, page, other) {
                NextPage::Refused(why) => assert!(why.contains("not followed"), "{why}"),
                n => panic!("{other}: {n:?}"),
            }
        }
    }
}
