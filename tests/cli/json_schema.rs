//! Every documented `--json` shape (docs/schemas/*.schema.json, described
//! in docs/json.md) checked against what the real binary prints: a field
//! renamed, added or dropped without the schema fails here.

use crate::common::*;
use serde_json::Value;

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!(
        "{}/docs/schemas/{name}.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn assert_valid(name: &str, out: &std::process::Output) {
    let text = stdout(out);
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{name}: not one JSON object ({e}): {text}"));
    let errors: Vec<String> = schema(name)
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{v:#}");
}

#[tokio::test]
async fn json_outputs_match_their_schemas() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    assert_valid("refresh", &t.run(&["--json", "refresh"]));
    assert_valid(
        "refresh",
        &t.run(&["--json", "refresh", "--dry-run", "--force"]),
    );
    assert_valid("status", &t.run(&["--json", "status"]));
    // A failure, from the config and from the command line.
    std::fs::remove_file(t.config_path()).unwrap();
    let out = t.run(&["--json", "refresh"]);
    assert_eq!(code(&out), 3);
    assert_valid("error", &out);
    let out = t.run(&["--json", "refresh", "--min-valid", "soon"]);
    assert_eq!(code(&out), 2);
    assert_valid("error", &out);
    assert_valid("init", &t.run(&["--json", "init", "--app-id", "A"]));
    // A schema that would accept anything checks nothing.
    let wrong: Value = serde_json::json!({"schemaVersion": 1, "command": "refresh", "ok": true});
    assert!(!schema("refresh").is_valid(&wrong));
}
