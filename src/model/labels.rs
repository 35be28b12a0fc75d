//! Labels: an application's own metadata recorded in a backup's manifest (`--label
//! app_version=2.3.1`), shown by list and show and used to choose backups. This file owns what a
//! label may be and how a set of wanted labels matches a backup's.

use std::collections::BTreeMap;

/// A backup's labels, by key (sorted, so manifests and reports list them in one order).
pub type Labels = BTreeMap<String, String>;

/// Most labels one backup may carry.
pub const MAX_LABELS: usize = 32;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 64;
/// Longest value, in bytes.
pub const MAX_VALUE: usize = 256;

/// Parses `KEY=VALUE` (the command line's form), checking both ([`check`]).
pub fn parse(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE (e.g. app_version=2.3.1)"))?;
    check(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// Checks one label: a key of 1 to 64 ASCII letters, digits, `_`, `-` and `.`, starting with a
/// letter or digit; a value of at most 256 bytes without control characters.
pub fn check(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !key_ok {
        return Err(format!(
            "label key {key:?}: 1 to {MAX_KEY} letters, digits, '_', '-' or '.', starting with a letter or digit"
        ));
    }
    if value.len() > MAX_VALUE {
        return Err(format!(
            "label {key}: the value is {} bytes, more than {MAX_VALUE}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("label {key}: the value has a control character"));
    }
    Ok(())
}

/// Checks a whole set (each label, and at most [`MAX_LABELS`]).
pub fn check_all(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("{} labels, more than {MAX_LABELS}", labels.len()));
    }
    labels.iter().try_for_each(|(k, v)| check(k, v))
}

/// Builds a set from `KEY=VALUE` pairs; a key given twice is refused.
pub fn from_pairs(pairs: &[(String, String)]) -> Result<Labels, String> {
    let mut out = Labels::new();
    for (k, v) in pairs {
        if out.insert(k.clone(), v.clone()).is_some() {
            return Err(format!("label {k} given twice"));
        }
    }
    check_all(&out)?;
    Ok(out)
}

/// Whether `labels` has every one of `wanted` (each key with exactly that value).
pub fn matches(labels: &Labels, wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `k=v, k2=v2`, for people.
pub fn describe(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_checked() {
        assert_eq!(
            parse("app_version=2.3.1").unwrap(),
            ("app_version".into(), "2.3.1".into())
        );
        assert_eq!(parse("empty=").unwrap().1, "");
        assert_eq!(parse("a=b=c").unwrap().1, "b=c");
        for bad in ["novalue", "=v", "-k=v", "k y=v", "ké=v", "k=a\nb", "k=\u{7f}"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&format!("{}=v", "k".repeat(MAX_KEY))).is_ok());
        assert!(parse(&format!("{}=v", "k".repeat(MAX_KEY + 1))).is_err());
        assert!(parse(&format!("k={}", "v".repeat(MAX_VALUE + 1))).is_err());
        let twice = [
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ];
        assert!(from_pairs(&twice).is_err());
        let many: Vec<(String, String)> = (0..=MAX_LABELS).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(from_pairs(&many).is_err());
        assert_eq!(from_pairs(&many[..MAX_LABELS]).unwrap().len(), MAX_LABELS);
    }

    #[test]
    fn every_wanted_label_must_match() {
        let have = from_pairs(&[("a".into(), "1".into()), ("b".into(), "2".into())]).unwrap();
        assert!(matches(&have, &[]));
        assert!(matches(&have, &[("a".into(), "1".into())]));
        assert!(matches(
            &have,
            &[("a".into(), "1".into()), ("b".into(), "2".into())]
        ));
        assert!(!matches(&have, &[("a".into(), "2".into())]));
        assert!(!matches(&have, &[("c".into(), "1".into())]));
        assert_eq!(describe(&have), "a=1, b=2");
    }
}
