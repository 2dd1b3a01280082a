//! The customer orgs the service app is authorized in, each with its own data sources.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::DataSource;
use crate::util;

/// One org the service app is authorized in.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    /// Webex org id: base64 of `ciscospark://us/ORGANIZATION/<uuid>`.
    pub id: String,
    /// The uuid inside the id (tokens and `jwsToken`s carry it).
    pub uuid: String,
    /// `org1`, `org2`, … in the order the orgs were added.
    pub name: String,
    /// This org's data sources, oldest first.
    pub data_sources: Vec<DataSource>,
}

impl Org {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "orgId": self.id,
            "dataSources": self.data_sources.len(),
        })
    }
}

/// Orgs in the order they were added, with an index by id. Orgs are never
/// removed, so a position (`usize`) names an org for good.
#[derive(Debug, Default)]
pub(crate) struct Orgs {
    list: Vec<Org>,
    index: HashMap<String, usize>,
}

/// The uuid inside a Webex org id (`ciscospark://<region>/ORGANIZATION/<uuid>`,
/// base64 with or without padding), or `None` if the id is not shaped like one.
pub(crate) fn org_uuid(id: &str) -> Option<String> {
    let rest = util::webex_id_path(id)?;
    let (region, rest) = rest.split_once('/')?;
    let uuid = rest.strip_prefix("ORGANIZATION/")?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (ok(region) && ok(uuid)).then(|| uuid.to_string())
}

/// A fresh org id shaped like Webex's: base64 of `ciscospark://us/ORGANIZATION/<random uuid>`.
pub fn random_org_id() -> String {
    util::webex_id("ORGANIZATION", &util::uuid_v4())
}

impl Orgs {
    /// Adds an org (idempotent); returns its position, or an error for an id
    /// that is not shaped like a Webex org id.
    pub fn add(&mut self, id: &str) -> Result<usize, String> {
        if let Some(&i) = self.index.get(id) {
            return Ok(i);
        }
        let uuid = org_uuid(id).ok_or_else(|| {
            format!("not a Webex org id (base64 of ciscospark://us/ORGANIZATION/<uuid>): {id:?}")
        })?;
        let i = self.list.len();
        self.list.push(Org {
            id: id.to_string(),
            uuid,
            name: format!("org{}", i + 1),
            data_sources: Vec::new(),
        });
        self.index.insert(id.to_string(), i);
        Ok(i)
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn get(&self, i: usize) -> &Org {
        &self.list[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Org {
        &mut self.list[i]
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Org> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The org holding this data source, and its position in that org's list.
    /// A scan over all orgs: used by the library and control API only (the
    /// HTTP endpoints look in the token's org).
    pub fn find_data_source(&self, id: &str) -> Option<(usize, usize)> {
        self.list.iter().enumerate().find_map(|(o, org)| {
            org.data_sources
                .iter()
                .position(|d| d.id == id)
                .map(|p| (o, p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn org_ids_round_trip() {
        let id = random_org_id();
        let uuid = org_uuid(&id).unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(util::webex_id("ORGANIZATION", &uuid), id);
        assert_eq!(org_uuid("not base64!"), None);
        assert_eq!(org_uuid(&util::webex_id("PEOPLE", "x")), None);
        let padded = STANDARD.encode("ciscospark://eu/ORGANIZATION/abc");
        assert_eq!(org_uuid(&padded).as_deref(), Some("abc"));
        let mut orgs = Orgs::default();
        assert_eq!(orgs.add(&id), Ok(0));
        assert_eq!(orgs.add(&id), Ok(0));
        assert!(orgs.add("nope").is_err());
        assert_eq!(orgs.get(0).name, "org1");
        assert_eq!(orgs.len(), 1);
    }
}
