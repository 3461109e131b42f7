//! The golden protocol messages in `fixtures/protocol/` decode into our types and encode
//! back to the same JSON: the TypeScript client reads the same files.

use std::path::PathBuf;

use herenow::protocol::{ClientMsg, ServerMsg};
use serde_json::Value;

fn fixtures() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/protocol");
    let mut out = Vec::new();
    for version in ["v1", "v2"] {
        for entry in std::fs::read_dir(root.join(version)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = format!("{version}/{}", path.file_name().unwrap().to_string_lossy());
                out.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    assert!(out.len() >= 15, "fixtures found: {}", out.len());
    out
}

#[test]
fn every_fixture_round_trips() {
    for (name, text) in fixtures() {
        let original: Value = serde_json::from_str(&text).unwrap();
        let encoded = if name.contains("/client.") {
            let msg: ClientMsg =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            serde_json::to_value(&msg).unwrap()
        } else {
            let msg: ServerMsg =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            serde_json::to_value(&msg).unwrap()
        };
        assert_eq!(encoded, original, "{name}");
    }
}

#[test]
fn client_fixtures_pass_validation() {
    for (name, text) in fixtures()
        .into_iter()
        .filter(|(n, _)| n.contains("/client."))
    {
        match herenow::protocol::decode(&text).unwrap_or_else(|e| panic!("{name}: {e:?}")) {
            ClientMsg::Hello(h) => {
                h.validate().unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            ClientMsg::Event(e) => {
                e.validate().unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            ClientMsg::Location(l) => {
                herenow::protocol::location(l.location).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            _ => {}
        }
    }
}
