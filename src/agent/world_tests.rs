//! Which loops a new org list starts and stops ([`Orgs::follow`]), without
//! running any.

use super::{Loop, OrgKey, Orgs, org_key};
use crate::fs_atomic::WriteMode;
use crate::store::{FilesStore, Store};
use crate::tokens::OrgId;

fn store(env_file: &str) -> Store {
    Store::Files(FilesStore {
        env_path: env_file.into(),
        config_path: "/x/token-config.json".into(),
        mode: WriteMode::default(),
        config_cache: Default::default(),
    })
}

fn org(i: usize, name: &str, id: &str, env: &str) -> (OrgId, Store) {
    (OrgId::listed(i, name, id), store(env))
}

/// `Orgs` with a loop (not started) for each of `list`.
fn watching(list: &[(OrgId, Store)]) -> Orgs {
    let mut orgs = Orgs::default();
    for (o, s) in list {
        orgs.last_id += 1;
        orgs.loops.insert(
            orgs.last_id,
            Loop {
                key: org_key(o, s),
                org: o.clone(),
                env_file: s.env_path().to_path_buf(),
                retire: tokio::sync::watch::channel(false).0,
                retired: false,
            },
        );
    }
    orgs
}

fn retired(orgs: &Orgs) -> Vec<OrgKey> {
    let mut v: Vec<OrgKey> = orgs
        .loops
        .values()
        .filter(|l| l.retired)
        .map(|l| l.key.clone())
        .collect();
    v.sort();
    v
}

fn names(list: &[(OrgId, Store)]) -> Vec<&str> {
    list.iter().map(|(o, _)| o.name().unwrap()).collect()
}

#[test]
fn an_org_list_change_starts_the_added_and_retires_the_removed() {
    let (a, b, c) = (
        org(0, "a", "A", "/x/.env.a"),
        org(1, "b", "B", "/x/.env.b"),
        org(1, "c", "C", "/x/.env.c"),
    );
    let mut orgs = watching(&[a.clone(), b.clone()]);
    // The same list (a mere save of the config): nothing changes.
    assert!(orgs.follow(vec![a.clone(), b.clone()]).is_empty());
    assert!(retired(&orgs).is_empty());
    // b out, c in; a untouched.
    let added = orgs.follow(vec![a.clone(), c.clone()]);
    assert_eq!(names(&added), ["c"]);
    assert_eq!(retired(&orgs), [org_key(&b.0, &b.1)]);
    // A loop already retired stays retired once; its end is reported once.
    let id = orgs
        .loops
        .iter()
        .find(|(_, l)| l.retired)
        .map(|(id, _)| *id);
    assert!(orgs.follow(vec![a.clone()]).is_empty());
    assert_eq!(retired(&orgs), [org_key(&b.0, &b.1)]);
    let gone = orgs.ended(id.unwrap()).unwrap();
    assert_eq!(gone.org.name(), Some("b"));
    assert!(orgs.ended(id.unwrap()).is_none());
    // A loop not retired ends with its result counted.
    let a_id = orgs
        .loops
        .iter()
        .find(|(_, l)| !l.retired)
        .map(|(id, _)| *id);
    assert!(orgs.ended(a_id.unwrap()).is_none());
}

#[test]
fn a_changed_target_org_id_or_env_file_is_another_org() {
    let a = org(0, "a", "A", "/x/.env.a");
    for changed in [org(0, "a", "A2", "/x/.env.a"), org(0, "a", "A", "/y/a.env")] {
        let mut orgs = watching(std::slice::from_ref(&a));
        let added = orgs.follow(vec![changed.clone()]);
        assert_eq!(names(&added), ["a"]);
        assert_eq!(retired(&orgs), [org_key(&a.0, &a.1)]);
        // Until the new loop starts, no live loop reports under the name
        // (the retired one does not count).
        assert!(!orgs.has_name(&changed.0));
    }
    // Only the position in the list moved: the same org.
    let mut orgs = watching(std::slice::from_ref(&a));
    assert!(orgs.follow(vec![org(3, "a", "A", "/x/.env.a")]).is_empty());
    assert!(retired(&orgs).is_empty());
}
