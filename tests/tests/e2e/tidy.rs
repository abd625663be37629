//! Keeps the protocol document in step with the protocol code.

/// FNV-1a, enough to notice an edit.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn sync_protocol_doc_is_updated_with_the_protocol() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let code = std::fs::read_to_string(root.join("shared/src/protocol.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("shared/docs/sync-protocol.md")).unwrap();
    let hash = format!("{:016x}", fnv(code.replace("\r\n", "\n").as_bytes()));
    assert!(
        doc.contains(&format!("protocol.rs hash: {hash}")),
        "shared/src/protocol.rs changed: update shared/docs/sync-protocol.md and set its line `protocol.rs hash: {hash}`"
    );
}
