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

/// Which of the service app's orgs a token set belongs to. A config names
/// one org (`serviceApp.targetOrgId`: [`OrgId::configured`]) or several
/// (`serviceApp.orgs`: [`OrgId::listed`], by name and `targetOrgId`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OrgId(Option<ListedOrg>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ListedOrg {
    /// Position in `serviceApp.orgs`, for messages naming its keys.
    index: usize,
    name: String,
    target_org_id: String,
}

impl OrgId {
    /// The config's single org.
    pub fn configured() -> OrgId {
        OrgId(None)
    }

    /// Entry `index` of `serviceApp.orgs`.
    pub fn listed(index: usize, name: &str, target_org_id: &str) -> OrgId {
        OrgId(Some(ListedOrg {
            index,
            name: name.to_string(),
            target_org_id: target_org_id.to_string(),
        }))
    }

    /// The org's name in `serviceApp.orgs` (`None` for the single org).
    pub fn name(&self) -> Option<&str> {
        self.0.as_ref().map(|o| o.name.as_str())
    }

    /// The listed org's `targetOrgId` and position (`None` for the single
    /// org, whose id is `serviceApp.targetOrgId`).
    pub fn listed_target(&self) -> Option<(usize, &str)> {
        self.0.as_ref().map(|o| (o.index, o.target_org_id.as_str()))
    }
}
