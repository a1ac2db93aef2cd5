use super::*;
use crate::keys::{Chk, Edition, SskInsertUri, SskUri, UskUri};

fn pair(n: u8) -> SskPrivate {
    SskPrivate::from_seed([n; 32], [n.wrapping_add(100); 32])
}

#[test]
fn sign_verify_and_open() {
    let key = pair(1);
    let (routing, block) = key.sign("site-0", b"CHK@abc").unwrap();
    assert!(block.is_signed());
    assert_eq!(block.as_bytes().len(), SSK_BLOCK_LEN);
    assert_eq!(block.routing_key(), routing);
    assert_eq!(block.verify(&routing), Ok(()));
    let public = key.public();
    assert_eq!(public.routing_key("site-0"), routing);
    assert_eq!(public.decode("site-0", &block).unwrap(), b"CHK@abc");
    // Another name is another routing key, and the block does not open there.
    assert_ne!(public.routing_key("site-1"), routing);
    assert_eq!(public.decode("site-1", &block), Err(KeyError::KeyMismatch));
    // Deterministic: the same data signs to the same block.
    assert_eq!(key.sign("site-0", b"CHK@abc").unwrap().1, block);
    assert_eq!(
        key.sign("x", &[0; SSK_DATA_LEN + 1]).unwrap_err(),
        KeyError::DataTooLong(SSK_DATA_LEN + 1)
    );
}

#[test]
fn tampering_anywhere_fails_verification() {
    let key = pair(2);
    let (routing, block) = key.sign("doc", b"payload").unwrap();
    // Flip one bit in each part: public key, name, nonce, signature, ciphertext.
    for at in [0, 40, 70, 100, 200, SSK_BLOCK_LEN - 1] {
        let mut bytes = block.as_bytes().to_vec();
        bytes[at] ^= 1;
        let bad = Block::from_bytes(bytes).unwrap();
        assert!(bad.verify(&routing).is_err(), "flip at {at} verified");
    }
}

#[test]
fn foreign_key_pair_cannot_sign_under_a_name() {
    let owner = pair(3);
    let forger = pair(4);
    let routing = owner.public().routing_key("site-0");
    // The forger's own block names another routing key...
    let (theirs, forged) = forger.sign("site-0", b"evil").unwrap();
    assert_ne!(theirs, routing);
    assert_eq!(forged.verify(&routing), Err(KeyError::KeyMismatch));
    // ...and splicing in the owner's public key breaks the signature.
    let (_, good) = owner.sign("site-0", b"real").unwrap();
    let mut bytes = forged.as_bytes().to_vec();
    bytes[..64].copy_from_slice(&good.as_bytes()[..64]);
    let spliced = Block::from_bytes(bytes).unwrap();
    assert_eq!(spliced.routing_key(), routing);
    assert_eq!(spliced.verify(&routing), Err(KeyError::BadSignature));
}

#[test]
fn routing_key_hides_name_and_differs_from_chk() {
    let key = pair(5);
    let (routing, block) = key.sign("secret-name", b"data").unwrap();
    // Nothing in the block is the name in clear.
    let name = b"secret-name";
    assert!(!block.as_bytes().windows(name.len()).any(|w| w == name));
    // The same key pair with another crypto key gives another routing key.
    let other = SskPrivate::from_seed([5; 32], [0; 32]);
    assert_ne!(other.public().routing_key("secret-name"), routing);
    // A CHK block never verifies under an SSK routing key.
    let (_, chk_block) = Chk::encode(b"data").unwrap();
    assert!(chk_block.verify(&routing).is_err());
    assert!(!chk_block.is_signed());
}

#[test]
fn insert_and_request_uris_never_pass_for_each_other() {
    let insert = SskInsertUri {
        key: pair(9),
        docname: "site".into(),
    };
    let (secret, public) = (insert.to_string(), insert.public().to_string());
    assert!(secret.contains(",insert/"), "{secret}");
    // The request URI where the insert URI belongs: refused, saying so.
    assert_eq!(
        public.parse::<SskInsertUri>().err(),
        Some(KeyError::RequestNotInsert)
    );
    // The insert URI where a request URI belongs: refused, naming the one
    // to share (and never echoing the secret).
    match secret.parse::<SskUri>() {
        Err(KeyError::InsertNotRequest(named)) => {
            assert_eq!(named, public);
            assert!(!named.contains(&insert.key.seed_base64()));
        }
        other => panic!("{other:?}"),
    }
    let usk_secret = format!("{}/3", secret.replacen("SSK@", "USK@", 1));
    let usk_public = UskUri::of_insert(&insert, Edition::Number(3)).unwrap();
    assert_eq!(
        usk_secret.parse::<UskUri>(),
        Err(KeyError::InsertNotRequest(usk_public.to_string()))
    );
    // Any other third part (Freenet's settings bytes) is not a veil key.
    let freenet = public.replacen("/site", ",AQECAAE/site", 1);
    assert_eq!(freenet.parse::<SskUri>(), Err(KeyError::SskUriSyntax));
    assert_eq!(
        freenet.parse::<SskInsertUri>().err(),
        Some(KeyError::SskUriSyntax)
    );
}

#[test]
fn uri_round_trips() {
    let key = pair(6);
    let insert = SskInsertUri {
        key: key.clone(),
        docname: "site".into(),
    };
    let text = insert.to_string();
    let back: SskInsertUri = text.parse().unwrap();
    assert_eq!(back.public(), insert.public());
    let public = insert.public();
    let parsed: SskUri = public.to_string().parse().unwrap();
    assert_eq!(parsed, public);
    // A private seed never shows in the public URI.
    assert!(!public.to_string().contains(&key.seed_base64()));

    let usk = UskUri::of_insert(&insert, Edition::Number(7)).unwrap();
    let shown = usk.to_string();
    assert!(
        shown.starts_with("USK@") && shown.ends_with("/site/7"),
        "{shown}"
    );
    assert_eq!(shown.parse::<UskUri>().unwrap(), usk);
    let latest: UskUri = shown.replace("/site/7", "/site/-1/").parse().unwrap();
    assert_eq!(latest.edition, Edition::Latest);
    assert_eq!(
        usk.edition_uri(7).routing_key(),
        key.public().routing_key("site-7")
    );
}

#[test]
fn bad_uris_are_refused() {
    let public = pair(7).public();
    let good = UskUri {
        key: public.clone(),
        site: "s".into(),
        edition: Edition::Number(1),
    }
    .to_string();
    assert!(good.parse::<UskUri>().is_ok());
    let bad = [
        "USK@".to_string(),
        "USK@a,b/s/1".to_string(),
        "SSK@a,b".to_string(),
        good.replace("/s/1", "/s/x"),
        good.replace("/s/1", "/s/-2"),
        good.replace("/s/1", "/s/99999999999999999999999"),
        good.replace("/s/1", "//1"),
        good.replace("/s/1", "/1"),
        good.replace("USK@", "CHK@"),
    ];
    for bad in bad {
        assert!(bad.parse::<UskUri>().is_err(), "{bad}");
    }
    let long = SskUri {
        key: public,
        docname: "n".repeat(300),
    };
    assert!(long.to_string().parse::<SskUri>().is_err());
}
