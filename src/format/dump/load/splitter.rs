//! Splitting dump text into statements as it arrives line by line: quotes, comments and
//! `CREATE TRIGGER ... END` respected (SQLite's own `sqlite3_complete` decides where a trigger
//! ends), within a budget.

use crate::error::Result;
use std::io::{BufRead, Read};

/// Splits text into statements as it arrives line by line.
#[derive(Default)]
pub(super) struct Splitter {
    pub(super) buf: Vec<u8>,
    /// Where the line read last starts in `buf`.
    pub(super) line_start: usize,
    pub(super) scan: usize,
    pub(super) state: Lex,
    /// Offset in `buf` where the current statement's first token is.
    pub(super) start: Option<usize>,
    pub(super) start_line: Option<u64>,
    /// In a block comment: the previous byte was a '*' of the comment's body.
    pub(super) star: bool,
    /// Bytes of the current statement scanned for its end so far.
    pub(super) checked: usize,
    /// Where a CREATE TRIGGER statement is, in SQLite's terms for finding its end.
    pub(super) trig: Trig,
    /// Ask SQLite's rule only where the token tracking says a trigger may end, even for a short
    /// statement (as for one past [`SHORT_CHECKS`]): for [`split_statements`].
    pub(super) track_only: bool,
}

/// The states of `sqlite3_complete()` inside a trigger's body, followed token by token
/// (comments count as whitespace, quoted names and strings as other tokens).
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Trig {
    /// Not inside a trigger body (or not known to be).
    #[default]
    Unknown,
    /// Inside the body.
    Body,
    /// Just after a `;` of the body.
    Semi,
    /// After `; END`: a `;` now ends the trigger.
    SemiEnd,
}

impl Trig {
    /// The state after a token that is not `;` (`is_end`: the word END).
    pub(super) fn token(self, is_end: bool) -> Trig {
        match (self, is_end) {
            (Trig::Unknown, _) => Trig::Unknown,
            (Trig::Semi, true) => Trig::SemiEnd,
            _ => Trig::Body,
        }
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lex {
    #[default]
    Normal,
    Quote(u8),
    LineComment,
    BlockComment,
}

impl Splitter {
    pub(super) fn idle(&self) -> bool {
        self.start.is_none() && self.state == Lex::Normal
    }

    /// Bytes of the statement still open (after [`Splitter::split`]: nothing else is kept).
    pub(super) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Appends the next line of `reader` (at most `cap` bytes) to the buffer; its length.
    pub(super) fn read_line(&mut self, reader: &mut dyn BufRead, cap: u64) -> std::io::Result<usize> {
        self.line_start = self.buf.len();
        reader.take(cap).read_until(b'\n', &mut self.buf)
    }

    /// The line read last.
    pub(super) fn line(&self) -> &[u8] {
        &self.buf[self.line_start..]
    }

    /// Forgets the line read last (one that is not SQL: the end line).
    pub(super) fn discard_line(&mut self) {
        self.buf.truncate(self.line_start);
    }

    #[cfg(test)]
    pub(super) fn push(
        &mut self,
        line: &[u8],
        line_no: u64,
        on_stmt: &mut dyn FnMut(&[u8], u64) -> Result<()>,
    ) -> Result<()> {
        self.line_start = self.buf.len();
        self.buf.extend_from_slice(line);
        self.split(line_no, on_stmt)
    }

    /// Hands every statement completed by the line read last to `on_stmt`.
    pub(super) fn split(
        &mut self,
        line_no: u64,
        on_stmt: &mut dyn FnMut(&[u8], u64) -> Result<()>,
    ) -> Result<()> {
        let mut i = self.scan;
        while i < self.buf.len() {
            let b = self.buf[i];
            match self.state {
                // Quoted text and comments are most of a dump: jump to their end.
                Lex::Quote(q) => match memchr::memchr(q, &self.buf[i..]) {
                    Some(off) => {
                        i += off;
                        self.state = Lex::Normal;
                    }
                    None => i = self.buf.len(),
                },
                Lex::LineComment => match memchr::memchr(b'\n', &self.buf[i..]) {
                    Some(off) => {
                        i += off;
                        self.state = Lex::Normal;
                    }
                    None => i = self.buf.len(),
                },
                Lex::BlockComment => {
                    if b == b'/' && self.star {
                        self.state = Lex::Normal;
                    }
                    // Only a '*' inside the comment (not the opener's) can close it.
                    self.star = b == b'*';
                }
                Lex::Normal => match b {
                    b'\'' | b'"' | b'`' => {
                        self.begin_token(i, line_no);
                        self.state = Lex::Quote(b);
                        self.trig = self.trig.token(false);
                    }
                    b'[' => {
                        self.begin_token(i, line_no);
                        self.state = Lex::Quote(b']');
                        self.trig = self.trig.token(false);
                    }
                    b'-' if self.buf.get(i + 1) == Some(&b'-') => self.state = Lex::LineComment,
                    b'/' if self.buf.get(i + 1) == Some(&b'*') => {
                        self.state = Lex::BlockComment;
                        self.star = false;
                        i += 1;
                    }
                    b';' => {
                        if let Some(start) = self.start {
                            let stmt = &self.buf[start..=i];
                            // SQLite's own rule says where a CREATE statement ends (a trigger:
                            // at `; END ;`). It rescans the whole statement, so it is asked at
                            // the first `;`, then where the tokens seen say a trigger ends, and
                            // at other `;` only while the statement is short. Past the budget
                            // the statement goes as it is (SQLite then refuses it).
                            let complete = if !starts_create(stmt) || self.checked > COMPLETE_BUDGET {
                                true
                            } else if self.trig == Trig::Unknown
                                || self.trig == Trig::SemiEnd
                                || (!self.track_only && self.checked <= SHORT_CHECKS)
                            {
                                self.checked += stmt.len();
                                is_complete(stmt)
                            } else {
                                false
                            };
                            if complete {
                                let at = self.start_line.unwrap_or(line_no);
                                on_stmt(stmt, at)?;
                                self.start = None;
                                self.start_line = None;
                                self.checked = 0;
                                self.trig = Trig::Unknown;
                            } else {
                                self.trig = Trig::Semi;
                            }
                        }
                    }
                    b if b.is_ascii_whitespace() => {}
                    // A word (as SQLite's tokenizer reads identifiers and keywords): only
                    // END matters, to follow where a trigger ends.
                    b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                        self.begin_token(i, line_no);
                        let end = self.buf[i..]
                            .iter()
                            .position(|&c| {
                                !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80)
                            })
                            .map_or(self.buf.len(), |o| i + o);
                        self.trig = self.trig.token(self.buf[i..end].eq_ignore_ascii_case(b"END"));
                        i = end - 1;
                    }
                    _ => {
                        self.begin_token(i, line_no);
                        self.trig = self.trig.token(false);
                    }
                },
            }
            i += 1;
        }
        // Drop what is behind the current statement, and the room a long one needed.
        let keep_from = self.start.unwrap_or(self.buf.len());
        self.buf.drain(..keep_from);
        if let Some(s) = self.start.as_mut() {
            *s = 0;
        }
        if self.buf.capacity() > 64 << 20 && self.buf.len() < 1 << 20 {
            self.buf.shrink_to(1 << 20);
        }
        self.scan = self.buf.len();
        self.line_start = self.buf.len();
        Ok(())
    }

    pub(super) fn begin_token(&mut self, i: usize, line_no: u64) {
        if self.start.is_none() {
            self.start = Some(i);
            self.start_line = Some(line_no);
        }
    }
}

/// Whether a statement ending in `;` is complete: always, except inside `CREATE TRIGGER ...
/// BEGIN ... END`, which SQLite's own `sqlite3_complete` tells.
/// Bytes of one statement that may be scanned for its end (at each `;` inside a CREATE
/// TRIGGER's body, the whole statement so far is): far more than any real trigger needs.
pub(super) const COMPLETE_BUDGET: usize = 256 << 20;
/// While a statement has cost less than this, its end is also asked for at every `;` (as
/// SQLite's own rule, not the token tracking, would say): a short trigger never depends on
/// the tracking.
pub(super) const SHORT_CHECKS: usize = 1 << 20;

/// Splits `text` into statements, line by line, as [`load`] does: the byte range of each
/// statement in `text` and the line it starts on, and whether a statement is left open at the
/// end. With `track_only`, where a trigger ends is decided as for a statement past 1 MiB (by
/// the token tracking, with SQLite's rule asked only where it says). For the fuzz targets in
/// `fuzz/`, which compare it with SQLite's own `sqlite3_complete`.
#[doc(hidden)]
pub fn split_statements(text: &[u8], track_only: bool) -> (Vec<(std::ops::Range<usize>, u64)>, bool) {
    let mut s = Splitter {
        track_only,
        ..Splitter::default()
    };
    let mut out = Vec::new();
    let mut pushed = 0usize;
    for (n, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        s.line_start = s.buf.len();
        s.buf.extend_from_slice(line);
        pushed += line.len();
        // `buf` holds the tail of the text pushed so far; statements are slices of it.
        let base = s.buf.as_ptr() as usize;
        let base_off = pushed - s.buf.len();
        let _ = s.split(n as u64 + 1, &mut |stmt, at| {
            let start = base_off + (stmt.as_ptr() as usize - base);
            out.push((start..start + stmt.len(), at));
            Ok(())
        });
    }
    (out, s.start.is_some())
}

/// Whether a statement starts with CREATE (only then can a `;` fall inside it: a trigger body).
pub(super) fn starts_create(stmt: &[u8]) -> bool {
    stmt[..stmt.len().min(6)].eq_ignore_ascii_case(b"CREATE")
}

/// Whether a CREATE statement ending in `;` is complete (SQLite's own rule, which knows that a
/// trigger ends at its END).
pub(super) fn is_complete(stmt: &[u8]) -> bool {
    if !starts_create(stmt) {
        return true;
    }
    let mut c = Vec::with_capacity(stmt.len() + 1);
    c.extend_from_slice(stmt);
    c.push(0);
    // SAFETY: `c` is NUL-terminated and lives across the call.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr().cast()) != 0 }
}
