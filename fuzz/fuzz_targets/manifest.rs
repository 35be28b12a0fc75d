//! The manifest parser: `manifest.json` as an archive or a dump's line 3 carries it, through
//! serde and `Manifest::validate`; a valid manifest must survive a JSON round trip. The dump
//! trailer parser and the page-hash key parser take the same input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault::format::dump;
use litevault::sqlite::pageset;
use litevault::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dump::parse_trailer(text);
    }
    let Ok(m) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    if m.validate().is_err() {
        return;
    }
    let _ = m.total_rows();
    if let Some(ph) = &m.page_hashes {
        let _ = pageset::parse_key(&ph.key);
    }
    let again: Manifest = serde_json::from_slice(&serde_json::to_vec(&m).expect("serialize"))
        .expect("a valid manifest reads back");
    assert_eq!(again, m);
    assert!(again.validate().is_ok());
});
