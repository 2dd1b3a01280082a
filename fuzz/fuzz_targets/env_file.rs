//! Fuzzes the .env editor: any bytes that parse, updated with any value,
//! must either be refused (a value with control characters, or an entry
//! python-dotenv reads as a different span) or read back (through our
//! parser and through dotenvy) with the new value, and every other key must
//! keep its value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use webex_token::store::env_file::EnvDocument;

fuzz_target!(|data: &[u8]| {
    // Split the input: file bytes, then (after the first 0xFF) the value.
    let (file, value) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"fuzz"[..]),
    };
    let Ok(value) = std::str::from_utf8(value) else { return };
    let path = Path::new("/fuzz/.env");
    let Ok(doc) = EnvDocument::parse(file.to_vec(), path) else { return };
    let key = "WEBEX_SERVICE_APP_ACCESS_TOKEN";
    let before: Vec<(String, Option<String>)> =
        doc.keys().map(|k| (k.to_string(), doc.get(k))).collect();
    let Ok(out) = doc.try_render_with(&[(key, value)]) else {
        assert!(
            !webex_token::env_file::writable_value(value)
                || doc.value(key).is_err()
        );
        return;
    };
    let again = EnvDocument::parse(out.clone(), path).expect("our own output parses");
    assert_eq!(again.get(key).as_deref(), Some(value));
    for (k, v) in before {
        if k != key {
            assert_eq!(again.get(&k), v, "key {k} changed");
        }
    }
    let via_dotenvy: Vec<(String, String)> = dotenvy::from_read_iter(
        out.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&out),
    )
    // Lines only python-dotenv reads are errors to dotenvy; it reads the rest.
    .filter_map(Result::ok)
    .collect();
    let first = via_dotenvy.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(first, Some(value));
});
