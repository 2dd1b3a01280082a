//! The shared model: what a run stores and hands around, independent of
//! where it is stored (env file, etcd) or how it was obtained (the chain).

use crate::clock;
use crate::secret::SecretString;
use crate::webex::TokenGrant;
use jiff::Timestamp;

pub use crate::config::PersonalUpdate as RenewableUpdate;

/// The service-app tokens as stored in the env file.
#[derive(Debug, Clone, Default)]
pub struct StoredTokens {
    pub access_token: Option<SecretString>,
    pub access_expires_at: Option<Timestamp>,
    pub refresh_token: Option<SecretString>,
    pub refresh_expires_at: Option<Timestamp>,
}

impl StoredTokens {
    /// The set after a successful grant received at `now`: a missing
    /// `refresh_token` keeps the old one (and its expiry), never erases it.
    pub fn after_grant(&self, grant: &TokenGrant, now: Timestamp) -> StoredTokens {
        let (refresh_token, refresh_expires_at) = match &grant.refresh_token {
            Some(rt) => (
                Some(rt.clone()),
                grant.refresh_token_expires_in.map(|s| clock::after(now, s)),
            ),
            None => (self.refresh_token.clone(), self.refresh_expires_at),
        };
        StoredTokens {
            access_token: Some(grant.access_token.clone()),
            access_expires_at: grant.expires_in.map(|s| clock::after(now, s)),
            refresh_token,
            refresh_expires_at,
        }
    }
}

/// Which of the service app's orgs a token set belongs to. Today a config
/// names one org (`serviceApp.targetOrgId`); the default `OrgId` is that one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OrgId(Option<String>);

impl OrgId {
    /// The config's single org.
    pub fn configured() -> OrgId {
        OrgId(None)
    }
}
