//! `GenerateSSK` → `SSKKeypair`, and FCP's URIs read as veil keys.
//!
//! veil's keys keep their own form (docs/fcp.md maps them onto Freenet's):
//! `CHK@<routing key>,<decryption key>` has no third "extra" part, and an
//! SSK is `SSK@<key>,<crypto key>/<name>`, its insert URI holding the
//! private seed where the request URI holds the public key. A URI may
//! start with `freenet:`, as Freenet's tools write them.

use super::{codes, Refusal};
use crate::client::usk;
use crate::fcp::frame::Message;
use crate::keys::uri::INSERT_MARK;
use crate::keys::{KskUri, SskInsertUri};

/// `GenerateSSK`: a fresh key pair, both URIs ending in `/` (append a
/// document name, or `site/N` after swapping `SSK@` for `USK@`).
pub fn generate_ssk(msg: &Message) -> Message {
    let insert = usk::keygen(&mut rand::rngs::OsRng);
    Message::new("SSKKeypair")
        .with_opt("Identifier", msg.identifier())
        .with("InsertURI", &insert)
        .with("RequestURI", insert.public())
}

/// A URI without its `freenet:` prefix and surrounding space.
pub fn strip(uri: &str) -> &str {
    let uri = uri.trim();
    uri.strip_prefix("freenet:").unwrap_or(uri)
}

/// Where a `ClientPut` inserts.
#[derive(Debug)]
pub enum InsertUri {
    /// `CHK@`, or `CHK@/<name>` (the name as `TargetFilename`): the
    /// content's own hash names it.
    Chk(Option<String>),
    /// `SSK@<private>,<crypto key>/<name>`: a signed document.
    Ssk(SskInsertUri),
    /// `USK@<private>,<crypto key>/<site>/<edition>`: an edition of a site
    /// (`site` is the insert URI's document name).
    Usk(SskInsertUri, u64),
    /// `KSK@<name>`: the signed document the name alone derives.
    Ksk(KskUri),
}

/// Read a `ClientPut`'s `URI`.
pub fn parse_insert(text: &str) -> Result<InsertUri, Refusal> {
    let uri = strip(text);
    let bad = |why: String| Refusal::protocol(codes::URI_PARSE_ERROR, why);
    match uri.split_once('@').map(|(k, _)| k) {
        Some("CHK") => {
            let name = uri["CHK@".len()..].trim_start_matches('/');
            Ok(InsertUri::Chk((!name.is_empty()).then(|| name.to_string())))
        }
        Some("SSK") => {
            check_two_parts(uri).map_err(bad)?;
            let insert: SskInsertUri = uri
                .parse()
                .map_err(|e| bad(format!("{uri}: not an SSK insert URI: {e}")))?;
            if insert.docname.is_empty() {
                return Err(bad(format!(
                    "{uri}: an SSK insert URI needs a document name: SSK@<private>,<crypto key>/<name>"
                )));
            }
            Ok(InsertUri::Ssk(insert))
        }
        Some("USK") => {
            check_two_parts(uri).map_err(bad)?;
            let rest = &uri["USK@".len()..];
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (site, edition) = rest.rsplit_once('/').ok_or_else(|| {
                bad(format!(
                    "{uri}: a USK insert URI is USK@<private>,<crypto key>/<site>/<edition>"
                ))
            })?;
            let edition: i64 = edition
                .parse()
                .map_err(|_| bad(format!("{uri}: edition {edition:?} is not a number")))?;
            let insert = usk::parse_insert(&format!("SSK@{site}"))
                .map_err(|e| bad(format!("{uri}: {e}")))?;
            Ok(InsertUri::Usk(insert, edition.max(0) as u64))
        }
        Some("KSK") => {
            Ok(InsertUri::Ksk(uri.parse().map_err(|e| {
                bad(format!("{uri}: not a KSK@<name>: {e}"))
            })?))
        }
        _ => Err(bad(format!(
            "{uri}: not a URI veil inserts to (CHK@, SSK@<private>,<crypto key>/<name>, \
             USK@<private>,<crypto key>/<site>/<edition>)"
        ))),
    }
}

/// Freenet's SSKs have three comma-separated parts, the third a few bytes
/// of settings; veil's have two, and its insert URIs a third that says
/// `insert`.
fn check_two_parts(uri: &str) -> Result<(), String> {
    let keys = uri.split('/').next().unwrap_or(uri);
    let veil = match keys.matches(',').count() {
        1 => true,
        2 => keys.ends_with(&format!(",{INSERT_MARK}")),
        _ => false,
    };
    if !veil {
        return Err(format!(
            "{uri}: not a veil key (<key>,<crypto key>, and ,{INSERT_MARK} for an insert URI; \
             Freenet's keys do not work on veil: make one with GenerateSSK)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_uris_of_each_kind() {
        let insert = usk::keygen(&mut rand::rngs::OsRng);
        assert!(matches!(
            parse_insert("freenet:CHK@"),
            Ok(InsertUri::Chk(None))
        ));
        assert!(matches!(parse_insert("CHK@/a.txt"), Ok(InsertUri::Chk(Some(n))) if n == "a.txt"));
        let ssk = format!("{insert}doc");
        match parse_insert(&ssk) {
            Ok(InsertUri::Ssk(i)) => assert_eq!(
                i.public(),
                SskInsertUri {
                    docname: "doc".into(),
                    ..insert.clone()
                }
                .public()
            ),
            other => panic!("{other:?}"),
        }
        let usk_uri = format!("{}site/4", insert.to_string().replace("SSK@", "USK@"));
        assert!(matches!(parse_insert(&usk_uri), Ok(InsertUri::Usk(i, 4)) if i.docname == "site"));
        assert!(
            parse_insert(&insert.to_string()).is_err(),
            "no document name"
        );
        assert!(matches!(parse_insert("KSK@hello"), Ok(InsertUri::Ksk(k)) if k.name == "hello"));
        assert!(parse_insert("KSK@").is_err());
        assert!(parse_insert("SSK@a,b,AQECAAE/x").is_err());
        assert!(parse_insert("http://x").is_err());
    }
}
