//! Just enough of SQL's lexical structure to classify a dump's statements before SQLite sees
//! them: words, identifiers, quoted literals, the target of an INSERT or CREATE, PRAGMAs.

/// The first `n` words of a statement, uppercased (identifiers and keywords only; stops at
/// anything else).
pub(super) fn words(sql: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while out.len() < n {
        rest = skip_space(rest);
        let w: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if w.is_empty() {
            break;
        }
        rest = &rest[w.len()..];
        out.push(w.to_ascii_uppercase());
    }
    out
}

/// Skips whitespace and comments.
pub(super) fn skip_space(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        if let Some(r) = t.strip_prefix("--") {
            s = r.find('\n').map(|i| &r[i + 1..]).unwrap_or("");
        } else if let Some(r) = t.strip_prefix("/*") {
            s = r.find("*/").map(|i| &r[i + 2..]).unwrap_or("");
        } else {
            return t;
        }
    }
}

/// Reads one identifier (bare or quoted) at the start of `s`; returns it and the rest.
pub(super) fn ident(s: &str) -> Option<(String, &str)> {
    let s = skip_space(s);
    let close = match s.chars().next()? {
        '"' => '"',
        '\'' => '\'',
        '`' => '`',
        '[' => ']',
        c if c.is_alphanumeric() || c == '_' => {
            let end = s
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '$'))
                .map(|(i, _)| i)
                .unwrap_or(s.len());
            return Some((s[..end].to_string(), &s[end..]));
        }
        _ => return None,
    };
    let mut out = String::new();
    let mut it = s[1..].char_indices();
    while let Some((i, c)) = it.next() {
        if c == close {
            if close != ']' && s[1 + i + 1..].starts_with(close) {
                out.push(close);
                it.next();
                continue;
            }
            return Some((out, &s[1 + i + 1..]));
        }
        out.push(c);
    }
    None
}

/// The table an INSERT writes to: (schema, name, rest of the statement after the name).
pub(super) fn insert_target(sql: &str) -> Option<(Option<String>, String, &str)> {
    let (w, mut rest) = ident(sql)?;
    if w.eq_ignore_ascii_case("INSERT") {
        let (w, r) = ident(rest)?;
        rest = r;
        if w.eq_ignore_ascii_case("OR") {
            let (_, r) = ident(rest)?;
            rest = r;
        } else if w.eq_ignore_ascii_case("INTO") {
            return table_name(rest);
        } else {
            return None;
        }
    } else if !w.eq_ignore_ascii_case("REPLACE") {
        return None;
    }
    let (w, r) = ident(rest)?;
    if !w.eq_ignore_ascii_case("INTO") {
        return None;
    }
    table_name(r)
}

/// `[schema.]name` at the start of `s`.
pub(super) fn table_name(s: &str) -> Option<(Option<String>, String, &str)> {
    let (first, r) = ident(s)?;
    if let Some(after_dot) = skip_space(r).strip_prefix('.') {
        let (name, r) = ident(after_dot)?;
        return Some((Some(first), name, r));
    }
    Some((None, first, r))
}

/// The object a CREATE statement makes: (schema, name, the text after the name).
pub(super) fn created_object(sql: &str) -> Option<(Option<String>, String, &str)> {
    let (_, mut r) = ident(sql)?; // CREATE
    loop {
        let (w, after) = ident(r)?;
        match w.to_ascii_uppercase().as_str() {
            "UNIQUE" | "TABLE" | "INDEX" | "VIEW" | "TRIGGER" | "VIRTUAL" | "TEMP" | "TEMPORARY" => r = after,
            "IF" => {
                let (_, a) = ident(after)?; // NOT
                let (_, a) = ident(a)?; // EXISTS
                r = a;
            }
            _ => return table_name(r),
        }
    }
}

/// Skips a parenthesised group (quotes respected); returns the text after it.
pub(super) fn skip_parens(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        if let Some(end) = literal_end(b, i) {
            i = end + 1;
            continue;
        }
        match b[i] {
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&s[i + 1..]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `keyword` appears as a word outside quotes and comments.
pub(super) fn has_keyword(sql: &str, keyword: &str) -> bool {
    find_keyword(sql, keyword).is_some()
}

/// The lowercased name a `CREATE TABLE [IF NOT EXISTS] name` creates.
pub(super) fn created_name(sql: &str) -> Option<String> {
    let (_, r) = ident(sql)?; // CREATE
    let (_, mut r) = ident(r)?; // TABLE
    let (w, after) = ident(r)?;
    if w.eq_ignore_ascii_case("IF") {
        let (_, a) = ident(after)?; // NOT
        let (_, a) = ident(a)?; // EXISTS
        r = a;
    }
    table_name(r).map(|(_, n, _)| n.to_ascii_lowercase())
}

/// Byte offset of the top-level keyword `VALUES` in an INSERT (outside quotes and comments).
pub(super) fn values_offset(sql: &str) -> Option<usize> {
    find_keyword(sql, "VALUES")
}

/// If a quoted string, bracketed name or comment starts at `i`, the index of its last byte
/// (or the end of the text when it is not closed).
pub(super) fn literal_end(b: &[u8], i: usize) -> Option<usize> {
    let after = |needle: u8, from: usize| memchr::memchr(needle, &b[from..]).map_or(b.len(), |o| from + o);
    match b[i] {
        q @ (b'\'' | b'"' | b'`') => Some(after(q, i + 1)),
        b'[' => Some(after(b']', i + 1)),
        b'-' if b.get(i + 1) == Some(&b'-') => Some(after(b'\n', i)),
        b'/' if b.get(i + 1) == Some(&b'*') => {
            Some(memchr::memmem::find(&b[i + 2..], b"*/").map_or(b.len(), |o| i + 2 + o + 1))
        }
        _ => None,
    }
}

/// Byte offset of `keyword` as a whole word outside quotes and comments.
pub(super) fn find_keyword(sql: &str, keyword: &str) -> Option<usize> {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = literal_end(b, i) {
            i = end + 1;
        } else if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            if b[start..i].eq_ignore_ascii_case(keyword.as_bytes()) {
                return Some(start);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// A PRAGMA's name and value (unquoted), e.g. `PRAGMA main.user_version = 5`.
pub(super) fn pragma(sql: &str) -> Option<(Option<String>, String, Option<String>)> {
    let (_, r) = ident(sql)?;
    let (first, r) = ident(r)?;
    let (schema, name, r) = match skip_space(r).strip_prefix('.') {
        Some(after) => {
            let (n, r) = ident(after)?;
            (Some(first), n, r)
        }
        None => (None, first, r),
    };
    let r = skip_space(r).trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let value = if let Some(v) = r.strip_prefix('=') {
        Some(v.trim().to_string())
    } else if let Some(v) = r.strip_prefix('(') {
        Some(v.trim_end_matches(')').trim().to_string())
    } else if r.is_empty() {
        None
    } else {
        return None;
    };
    let value = value.map(|v| {
        let v = v.trim();
        for q in ['\'', '"'] {
            if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
                return inner.to_string();
            }
        }
        v.to_string()
    });
    Some((schema, name.to_ascii_lowercase(), value))
}
