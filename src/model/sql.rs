//! SQL text helpers that need no database: quoting identifiers.

/// Quotes an SQL identifier with double quotes, doubling any inside.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
