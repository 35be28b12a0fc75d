//! The daemon's request parsing: the bodies of POST /api/backup/create, /verify and /restore
//! (`serve::requests`), and the configuration file (`serve::Config::parse`), from the same
//! input (its first byte chooses). A body that parses must name a plain archive (never a path)
//! and keep its promises; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault::serve::requests::{self, Which};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(r) = requests::parse_database_request(body) {
                assert!(!r.database.is_empty() && r.database.len() <= 64);
            }
        }
        1 => {
            if let Ok((r, which)) = requests::parse_restore_request(body) {
                match which {
                    Which::Named(name) => {
                        assert!(r.archive.as_deref() == Some(name.as_str()) && !r.latest);
                        assert!(!name.contains('/') && !name.contains('\\') && !name.starts_with('.'));
                        assert!(!name.chars().any(char::is_control));
                        assert!(requests::check_archive_name(&name).is_ok());
                    }
                    Which::Latest(_) => assert!(r.latest && r.archive.is_none()),
                }
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                if let Ok(c) = litevault::serve::Config::parse(text, std::path::Path::new("/srv"), None) {
                    assert!(!c.databases.is_empty());
                    // A non-loopback address is only accepted with a token (there is none here).
                    assert!(c.listen.ip().is_loopback());
                    for d in &c.databases {
                        // Every schedule fires (checked when parsed).
                        assert!(d.schedule.next_after(1_764_547_200) > 1_764_547_200);
                    }
                }
            }
        }
    }
});
