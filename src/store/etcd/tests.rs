//! Unit tests of the etcd store's own logic (no etcd needed): key segments,
//! the manager merge, the export's revision line.

use super::*;

#[test]
fn segments_never_hold_a_slash() {
    assert_eq!(segment("abc-DEF_1.2"), "abc-DEF_1.2");
    assert_eq!(segment("Y2lz/Y28+="), "Y2lz%2FY28%2B%3D");
}

#[test]
fn manager_merge_keeps_the_stored_integration_token() {
    let old = ManagerDoc {
        personal_access_token: "p1".into(),
        integration_refresh_token: Some("irt".into()),
        integration_refresh_token_expires_at: Some("2030-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    let up = PersonalUpdate {
        personal_access_token: secret("p2"),
        personal_expires_at: None,
        integration_refresh_token: None,
        integration_refresh_expires_at: None,
        integration_client: None,
    };
    let m = ManagerDoc::merged(Some(old), &up);
    assert_eq!(m.personal_access_token, "p2");
    assert_eq!(m.integration_refresh_token.as_deref(), Some("irt"));
}

#[test]
fn export_revision_is_read_back() {
    let at = Revision {
        revision: 42,
        cluster: 0xabc,
    };
    let text = format!("A=1\n{} {at}\n", files::EXPORT_MARK);
    assert_eq!(export_revision(text.as_bytes()), Some(at));
    assert_eq!(export_revision(b"A=1\n"), None);
}
