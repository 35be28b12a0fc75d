//! Encrypted backups: archives and SQL dumps wrapped whole in the age format
//! (age-encryption.org/v1), so that `age -d -i key.txt X.tar.zst.age | tar --zstd -x` gives
//! them back without litevault, and whoever holds the bucket reads nothing of the database.
//!
//! This module owns who can read a new backup ([`Encryption`]: X25519 recipients, SSH public
//! keys, or a passphrase), the keys encrypted backups are read with ([`Identities`], which every
//! reader is given: an operation takes them from its [`crate::ops::Context`]), the encrypting
//! [`NewObject`] wrapper of the write path
//! (`encrypting`) and the decrypting reader of the read path (`plaintext`).
//!
//! The age stream cannot be rewritten in place, while a zstd archive's manifest is written last
//! into a reserved head. An encrypted zstd archive is therefore first written in clear into an
//! unnamed temp file of the system temp directory (mode 0600, gone when the process ends, however
//! it ends), its head patched, then encrypted into the location in one streaming pass; dumps and
//! gzip/uncompressed archives, which are final as written, are encrypted as they stream.

use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::secrecy::SecretString;

use crate::error::{Error, Result};
use crate::location::{NewObject, Published};

pub use crate::model::naming::AGE_EXTENSION as EXTENSION;

/// The first bytes of a binary age file.
const MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The first bytes of an ASCII-armored age file (`age -a`).
const ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
/// Largest key, recipients or passphrase file read.
const MAX_KEY_FILE: u64 = 1 << 20;

/// Whether the first bytes of a file are an age file's.
pub fn is_encrypted(head: &[u8]) -> bool {
    head.starts_with(MAGIC) || head.starts_with(ARMOR)
}

/// Whether the backup at `path` (a file or an object) is stored encrypted, from its first
/// bytes; `false` when it cannot be read (the reader that follows says why).
pub fn is_encrypted_file(path: &Path) -> bool {
    let Ok(r) = crate::location::open_read(path, true) else {
        return false;
    };
    let mut head = Vec::with_capacity(64);
    r.take(64).read_to_end(&mut head).is_ok() && is_encrypted(&head)
}

/// One recipient a backup is encrypted to.
#[derive(Clone)]
enum Recipient {
    X25519(age::x25519::Recipient),
    Ssh(Box<age::ssh::Recipient>),
}

#[derive(Clone)]
enum Kind {
    Recipients(Arc<Vec<Recipient>>),
    Passphrase(Arc<SecretString>),
}

/// Who can read a new backup: a list of age recipients (`age1...` X25519 keys, `ssh-ed25519` /
/// `ssh-rsa` public keys), or a passphrase (age's scrypt mode, which stands alone).
#[derive(Clone)]
pub struct Encryption {
    kind: Kind,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encryption({})", self.describe())
    }
}

/// Parses one recipient, as `age` writes them in a recipients file.
fn parse_recipient(text: &str) -> std::result::Result<Recipient, String> {
    let text = text.trim();
    if text.starts_with("ssh-") {
        return text
            .parse::<age::ssh::Recipient>()
            .map(|r| Recipient::Ssh(Box::new(r)))
            .map_err(|e| match e {
                age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                    "an ssh-rsa key shorter than 2048 bits is too weak".to_string()
                }
                age::ssh::ParseRecipientKeyError::RsaModulusTooLarge => {
                    "an ssh-rsa key longer than 4096 bits is not supported".to_string()
                }
                age::ssh::ParseRecipientKeyError::Unsupported(t) => {
                    format!("SSH key type {t} is not supported (ssh-ed25519 and ssh-rsa are)")
                }
                _ => "not a valid SSH public key".to_string(),
            });
    }
    if text.starts_with("age1") {
        return text
            .parse::<age::x25519::Recipient>()
            .map(Recipient::X25519)
            .map_err(|_| {
                if text.len() > 62 {
                    "not an X25519 recipient (age plugin recipients are not supported)".to_string()
                } else {
                    "not a valid age recipient (age1... of 62 characters)".to_string()
                }
            });
    }
    if text.starts_with("AGE-SECRET-KEY-") {
        return Err("this is a secret key (an identity): give its public key (age-keygen -y FILE)".into());
    }
    Err("not an age recipient (age1...) or SSH public key (ssh-ed25519 / ssh-rsa)".into())
}

/// Reads a small text file (keys, recipients, a passphrase).
fn read_key_file(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut text = String::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io("read", path, e))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(Error::Crypt {
            path: path.to_path_buf(),
            detail: "larger than 1 MiB: not a key file".into(),
            hint: None,
        });
    }
    Ok(text)
}

impl Encryption {
    /// Encryption to `keys` (recipient strings) and to the recipients listed in `files` (one a
    /// line, `#` comments and blank lines skipped, as `age -R` reads them). `None` when both are
    /// empty.
    pub fn to_recipients(keys: &[String], files: &[PathBuf]) -> Result<Option<Encryption>> {
        let mut list = Vec::new();
        for k in keys {
            list.push(
                parse_recipient(k)
                    .map_err(|why| Error::InvalidOption(format!("--encrypt-to {}: {why}", shorten(k))))?,
            );
        }
        for file in files {
            let text = read_key_file(file)?;
            let before = list.len();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                list.push(parse_recipient(line).map_err(|why| Error::Crypt {
                    path: file.clone(),
                    detail: format!("line {}: {why}", i + 1),
                    hint: Some("a recipients file holds one age1... or ssh-... public key a line"),
                })?);
            }
            if list.len() == before {
                return Err(Error::Crypt {
                    path: file.clone(),
                    detail: "holds no recipient".into(),
                    hint: Some("a recipients file holds one age1... or ssh-... public key a line"),
                });
            }
        }
        Ok((!list.is_empty()).then(|| Encryption {
            kind: Kind::Recipients(Arc::new(list)),
        }))
    }

    /// Encryption with the passphrase in the first line of `path` (age's scrypt mode).
    pub fn with_passphrase_file(path: &Path) -> Result<Encryption> {
        Ok(Encryption {
            kind: Kind::Passphrase(Arc::new(read_passphrase(path)?)),
        })
    }

    /// "2 recipients", "a passphrase".
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Recipients(r) if r.len() == 1 => "1 recipient".into(),
            Kind::Recipients(r) => format!("{} recipients", r.len()),
            Kind::Passphrase(_) => "a passphrase".into(),
        }
    }

    fn encryptor(&self) -> io::Result<age::Encryptor> {
        match &self.kind {
            Kind::Passphrase(p) => Ok(age::Encryptor::with_user_passphrase(SecretString::from(
                age::secrecy::ExposeSecret::expose_secret(p.as_ref()).to_string(),
            ))),
            Kind::Recipients(list) => {
                let dyns = list.iter().map(|r| -> &dyn age::Recipient {
                    match r {
                        Recipient::X25519(k) => k,
                        Recipient::Ssh(k) => k.as_ref(),
                    }
                });
                age::Encryptor::with_recipients(dyns).map_err(|e| io::Error::other(e.to_string()))
            }
        }
    }
}

/// `age1qqq...xyz`: a key shortened for an error message.
fn shorten(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= 24 {
        return s.to_string();
    }
    let head: String = s.chars().take(12).collect();
    let tail: String = s
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}...{tail}")
}

fn read_passphrase(path: &Path) -> Result<SecretString> {
    let text = read_key_file(path)?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(Error::Crypt {
            path: path.to_path_buf(),
            detail: "the passphrase file is empty (its first line is the passphrase)".into(),
            hint: None,
        });
    }
    Ok(SecretString::from(line.to_string()))
}

type Identity = Arc<dyn age::Identity + Send + Sync>;

/// Keys to read encrypted backups with: age identity files (`AGE-SECRET-KEY-1...` lines, as
/// `age-keygen` writes them), unencrypted SSH private keys (ed25519, rsa), passphrases.
#[derive(Clone, Default)]
pub struct Identities {
    keys: Vec<Identity>,
    passphrase: bool,
    sources: Vec<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({:?})", self.sources)
    }
}

impl Identities {
    /// No keys.
    pub fn new() -> Identities {
        Identities::default()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds the identities in `path`: an age identity file or an SSH private key.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let text = read_key_file(path)?;
        let bad = |detail: String, hint| Error::Crypt {
            path: path.to_path_buf(),
            detail,
            hint,
        };
        if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
            let id = age::ssh::Identity::from_buffer(text.as_bytes(), Some(path.display().to_string()))
                .map_err(|e| bad(format!("not a usable SSH private key: {e}"), None))?;
            match id {
                age::ssh::Identity::Unencrypted(_) => self.keys.push(Arc::new(id)),
                age::ssh::Identity::Encrypted(_) => {
                    return Err(bad(
                        "a passphrase-protected SSH key cannot be used (litevault never prompts)".into(),
                        Some("convert it to an age identity, or use an unprotected copy kept safe"),
                    ))
                }
                age::ssh::Identity::Unsupported(_) => {
                    return Err(bad(
                        "this SSH key type is not supported (ssh-ed25519 and ssh-rsa are)".into(),
                        None,
                    ))
                }
            }
        } else {
            let file = age::IdentityFile::from_buffer(text.as_bytes()).map_err(|e| {
                bad(
                    e.to_string(),
                    Some(
                        "an identity file holds AGE-SECRET-KEY-1... lines (age-keygen -o key.txt writes one)",
                    ),
                )
            })?;
            let ids = file
                .into_identities()
                .map_err(|e| bad(format!("cannot use its identities: {e}"), None))?;
            if ids.is_empty() {
                return Err(bad(
                    "holds no identity".into(),
                    Some(
                        "an identity file holds AGE-SECRET-KEY-1... lines (age-keygen -o key.txt writes one)",
                    ),
                ));
            }
            self.keys.extend(ids.into_iter().map(Identity::from));
        }
        self.sources.push(path.display().to_string());
        Ok(())
    }

    /// Adds the passphrase in the first line of `path`.
    pub fn add_passphrase_file(&mut self, path: &Path) -> Result<()> {
        let pass = read_passphrase(path)?;
        self.keys.push(Arc::new(age::scrypt::Identity::new(pass)));
        self.passphrase = true;
        self.sources.push(format!("passphrase in {}", path.display()));
        Ok(())
    }
}

/// The plaintext of a backup's stored bytes: `raw` itself when they are not encrypted, else the
/// decrypted stream (checked chunk by chunk: a changed byte fails the read). The flag says
/// whether they were encrypted.
pub(crate) fn plaintext(
    path: &Path,
    raw: Box<dyn Read + Send>,
    ids: &Identities,
) -> Result<(bool, Box<dyn Read + Send>)> {
    let mut buf = BufReader::with_capacity(1 << 16, raw);
    let head = buf.fill_buf().map_err(|e| read_error(path, e))?;
    if !is_encrypted(head) {
        return Ok((false, Box::new(buf)));
    }
    let decryptor =
        age::Decryptor::new_buffered(age::armor::ArmoredReader::new(buf)).map_err(|e| match e {
            age::DecryptError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Error::bad_archive(path, "its age header is cut short (truncated)")
            }
            age::DecryptError::Io(e) => read_error(path, e),
            age::DecryptError::UnknownFormat => Error::bad_archive(
                path,
                "encrypted with an age format version this litevault does not know",
            ),
            e => Error::bad_archive(path, format!("its age header is damaged ({e})")),
        })?;
    if ids.is_empty() {
        let what = if decryptor.is_scrypt() {
            "encrypted with a passphrase: --passphrase-file is needed to read it"
        } else {
            "encrypted: --identity is needed to read it"
        };
        return Err(Error::Crypt {
            path: path.to_path_buf(),
            detail: what.into(),
            hint: Some("pass --identity KEY_FILE (or set LITEVAULT_IDENTITY), or --passphrase-file FILE"),
        });
    }
    let scrypt = decryptor.is_scrypt();
    let reader = decryptor
        .decrypt(ids.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys if scrypt && !ids.passphrase => Error::Crypt {
                path: path.to_path_buf(),
                detail: "encrypted with a passphrase: --passphrase-file is needed to read it".into(),
                hint: None,
            },
            age::DecryptError::NoMatchingKeys | age::DecryptError::KeyDecryptionFailed => Error::Crypt {
                path: path.to_path_buf(),
                detail: if scrypt {
                    "the passphrase is wrong".into()
                } else {
                    format!(
                        "encrypted to other keys: no identity given fits ({})",
                        ids.sources.join(", ")
                    )
                },
                hint: Some("pass the identity (or passphrase) the backup was encrypted to"),
            },
            age::DecryptError::DecryptionFailed if scrypt => Error::Crypt {
                path: path.to_path_buf(),
                detail: "the passphrase is wrong".into(),
                hint: None,
            },
            age::DecryptError::ExcessiveWork { required, target } => Error::Crypt {
                path: path.to_path_buf(),
                detail: format!(
                    "its passphrase needs scrypt work factor {required}, more than this machine allows ({target})"
                ),
                hint: None,
            },
            age::DecryptError::Io(e) => read_error(path, e),
            e => Error::bad_archive(path, format!("its age header does not authenticate ({e})")),
        })?;
    Ok((true, Box::new(Decrypted { inner: reader })))
}

/// The decrypted stream; an authentication failure of a chunk reads as damage.
struct Decrypted<R> {
    inner: age::stream::StreamReader<R>,
}

impl<R: Read> Read for Decrypted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("encrypted data does not authenticate (changed or truncated): {e}"),
                )
            } else {
                e
            }
        })
    }
}

/// The error for a failed read of a backup's bytes: damage (an encrypted chunk that does not
/// authenticate, data a decoder cannot read) is a bad archive, anything else an I/O failure.
pub(crate) fn read_error(path: &Path, e: io::Error) -> Error {
    if let Some(remote) = crate::location::download_error(path, &e) {
        return remote;
    }
    if matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    ) {
        return Error::bad_archive(path, format!("cannot read it (damaged or truncated?): {e}"));
    }
    Error::io("read", path, e)
}

/// `inner` wrapped so that what is written to it is stored encrypted with `enc`. With
/// `head_reserve` (a zstd archive whose manifest is written last), the clear bytes go to a
/// private temp file until [`NewObject::finish`] patches the head and encrypts them in one pass.
pub(crate) fn encrypting(
    inner: Box<dyn NewObject>,
    enc: &Encryption,
    head_reserve: u64,
    path: &Path,
) -> Result<Box<dyn NewObject>> {
    let io_err = |e| Error::io("encrypt into", path, e);
    let state = if head_reserve > 0 {
        let dir = std::env::temp_dir();
        let spool = tempfile::tempfile_in(&dir).map_err(|e| Error::io("create temp file in", &dir, e))?;
        State::Spool {
            spool: io::BufWriter::with_capacity(1 << 20, spool),
            inner,
            enc: enc.clone(),
        }
    } else {
        State::Direct(
            enc.encryptor()
                .and_then(|e| e.wrap_output(inner))
                .map_err(io_err)?,
        )
    };
    Ok(Box::new(Encrypting {
        state: Some(state),
        path: path.to_path_buf(),
    }))
}

enum State {
    Direct(age::stream::StreamWriter<Box<dyn NewObject>>),
    Spool {
        spool: io::BufWriter<std::fs::File>,
        inner: Box<dyn NewObject>,
        enc: Encryption,
    },
}

struct Encrypting {
    state: Option<State>,
    path: PathBuf,
}

impl Write for Encrypting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            Some(State::Direct(w)) => w.write(buf),
            Some(State::Spool { spool, .. }) => spool.write(buf),
            None => Err(io::Error::other("the encrypted object is finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            Some(State::Direct(w)) => w.flush(),
            Some(State::Spool { spool, .. }) => spool.flush(),
            None => Ok(()),
        }
    }
}

impl NewObject for Encrypting {
    fn finish(mut self: Box<Self>, head: Option<&[u8]>) -> Result<Published> {
        let path = self.path.clone();
        let io_err = |e| Error::io("encrypt into", &path, e);
        match self.state.take() {
            Some(State::Direct(w)) => {
                if head.is_some() {
                    return Err(io_err(io::Error::other("no head was reserved")));
                }
                let inner = w.finish().map_err(io_err)?;
                inner.finish(None)
            }
            Some(State::Spool { spool, inner, enc }) => {
                let mut file = spool.into_inner().map_err(|e| io_err(e.into_error()))?;
                if let Some(head) = head {
                    use std::os::unix::fs::FileExt;
                    file.write_all_at(head, 0).map_err(io_err)?;
                }
                file.rewind().map_err(io_err)?;
                let mut w = enc
                    .encryptor()
                    .and_then(|e| e.wrap_output(inner))
                    .map_err(io_err)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = file.read(&mut buf).map_err(io_err)?;
                    if n == 0 {
                        break;
                    }
                    w.write_all(&buf[..n]).map_err(io_err)?;
                }
                let inner = w.finish().map_err(io_err)?;
                inner.finish(None)
            }
            None => Err(io_err(io::Error::other("the encrypted object is finished"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_parsed_and_bad_ones_named() {
        let id = age::x25519::Identity::generate();
        let r = id.to_public().to_string();
        let e = Encryption::to_recipients(std::slice::from_ref(&r), &[])
            .unwrap()
            .unwrap();
        assert_eq!(e.describe(), "1 recipient");
        assert!(Encryption::to_recipients(&[], &[]).unwrap().is_none());
        let err = Encryption::to_recipients(&["age1notakey".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("not a valid age recipient"), "{err}");
        let secret = age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
        let err = Encryption::to_recipients(std::slice::from_ref(&secret), &[]).unwrap_err();
        assert!(err.to_string().contains("secret key"), "{err}");
        // The secret never appears whole in the message.
        assert!(!err.to_string().contains(&secret), "{err}");
    }

    #[test]
    fn streams_round_trip_and_a_changed_byte_fails() {
        let id = age::x25519::Identity::generate();
        let enc = Encryption::to_recipients(&[id.to_public().to_string()], &[])
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let mut w = enc.encryptor().unwrap().wrap_output(&mut out).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        w.write_all(&data).unwrap();
        w.finish().unwrap();
        assert!(is_encrypted(&out));
        let mut ids = Identities::new();
        ids.keys.push(Arc::new(id));
        let p = Path::new("x.age");
        let (enc_flag, mut r) = plaintext(p, Box::new(io::Cursor::new(out.clone())), &ids).unwrap();
        assert!(enc_flag);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let mut bad = out.clone();
        let i = bad.len() - 1000;
        bad[i] ^= 1;
        let (_, mut r) = plaintext(p, Box::new(io::Cursor::new(bad)), &ids).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("does not authenticate"), "{err}");
    }
}
