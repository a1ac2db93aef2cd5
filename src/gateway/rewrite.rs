//! HTML from veil, made safe to show: every URL that would leave the
//! gateway is sent to the warning page, and scripts, event handlers,
//! `<base>` and `<meta http-equiv>` (refresh, CSP overrides) are removed.
//! The Content-Security-Policy ([`super::safety::CSP`]) already blocks
//! loads and scripts; this makes a click on an outside link stop at a
//! page that explains instead of leaving, and keeps a page that does not
//! honour CSP (an old browser) from leaking.

use lol_html::{element, rewrite_str, RewriteStrSettings};

use super::pages::encode;

/// Attributes that hold one URL.
const URL_ATTRS: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "poster",
    "background",
    "cite",
    "data",
    "longdesc",
    "manifest",
    "icon",
    "xlink:href",
    "ping",
    "lowsrc",
    "dynsrc",
];

/// Where a URL found in a page should point instead, if anywhere.
///
/// - `CHK@…` (and other `XXX@` keys) and `freenet:`/`veil:` URIs → `/KEY…`;
/// - relative URLs, absolute paths and `#fragments` → unchanged;
/// - anything with another scheme (`http:`, `javascript:`, `data:`, …) or a
///   host (`//host/…`) → `/external?url=…`.
pub fn rewrite_url(url: &str) -> Option<String> {
    let t = url.trim();
    let stripped = t
        .strip_prefix("freenet:")
        .or_else(|| t.strip_prefix("veil:"))
        .unwrap_or(t);
    if is_key(stripped) {
        return Some(format!("/{stripped}"));
    }
    if stripped.starts_with("//") || stripped.starts_with("\\\\") || stripped.starts_with("/\\") {
        return Some(external(t));
    }
    // A scheme is letters, digits, + - . before the first ':', which comes
    // before any '/', '?' or '#'. Browsers ignore tabs and newlines in URLs.
    let cleaned: String = stripped.chars().filter(|c| !c.is_whitespace()).collect();
    let head = cleaned.split(['/', '?', '#']).next().unwrap_or("");
    if head.contains(':') {
        return Some(external(t));
    }
    (stripped != t).then(|| stripped.to_string())
}

fn is_key(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 4 && b[3] == b'@' && b[..3].iter().all(u8::is_ascii_uppercase)
}

fn external(url: &str) -> String {
    format!("/external?url={}", encode(url))
}

/// `srcset`: comma-separated `URL [descriptor]` candidates.
fn rewrite_srcset(value: &str) -> String {
    value
        .split(',')
        .map(|candidate| {
            let c = candidate.trim();
            let (url, rest) = c.split_once(char::is_whitespace).unwrap_or((c, ""));
            let url = rewrite_url(url).unwrap_or_else(|| url.to_string());
            format!("{url} {rest}").trim().to_string()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rewrite a page. Input that is not UTF-8 is read lossily; on a parse
/// failure, a page saying so (never the original).
pub fn rewrite_html(html: &[u8]) -> String {
    let text = String::from_utf8_lossy(html);
    let mut handlers: Vec<_> = ["script", "noscript", "base", "meta[http-equiv]"]
        .iter()
        .map(|selector| {
            element!(selector, |el| {
                el.remove();
                Ok(())
            })
        })
        .collect();
    handlers.push(element!("*", |el| {
        let names: Vec<String> = el.attributes().iter().map(|a| a.name()).collect();
        for name in names {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("on") {
                el.remove_attribute(&name);
                continue;
            }
            let Some(value) = el.get_attribute(&name) else {
                continue;
            };
            let new = if lower == "srcset" || lower == "imagesrcset" {
                Some(rewrite_srcset(&value))
            } else if URL_ATTRS.contains(&lower.as_str()) {
                rewrite_url(&value)
            } else {
                None
            };
            if let Some(new) = new {
                el.set_attribute(&name, &new)?;
            }
        }
        Ok(())
    }));
    let settings = RewriteStrSettings {
        element_content_handlers: handlers,
        ..RewriteStrSettings::new()
    };
    rewrite_str(&text, settings).unwrap_or_else(|e| {
        super::pages::page(
            "Unreadable page",
            &format!(
                "<p class=\"warn\">This page could not be made safe to show: {}</p>",
                super::pages::escape(&e.to_string())
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_leaving_the_gateway_go_to_the_warning_page() {
        for out in [
            "http://example.invalid/x.png",
            "HTTPS://a.b/",
            "//evil.example/x",
            "javascript:alert(1)",
            "java\nscript:alert(1)",
            "data:text/html,hi",
            "mailto:a@b.c",
            " ftp://x",
        ] {
            let got = rewrite_url(out).unwrap_or_default();
            assert!(got.starts_with("/external?url="), "{out:?} -> {got:?}");
        }
        for stay in [
            "page2.html",
            "img/cat.png",
            "../up.html",
            "#top",
            "/status",
            "a?b=c:d",
        ] {
            assert_eq!(rewrite_url(stay), None, "{stay}");
        }
        assert_eq!(
            rewrite_url("CHK@abc,def/x").as_deref(),
            Some("/CHK@abc,def/x")
        );
        assert_eq!(rewrite_url("freenet:CHK@a,b").as_deref(), Some("/CHK@a,b"));
    }

    #[test]
    fn pages_lose_scripts_handlers_and_outside_links() {
        let html = br#"<html><head><base href="http://x/"><meta http-equiv="refresh" content="0;url=http://x/">
            <script>alert(1)</script></head><body onload="x()">
            <a href="http://example.invalid/">out</a><a href="page2.html">in</a>
            <img src="http://example.invalid/x.png" srcset="http://a/1.png 1x, b.png 2x">
            <img src="cat.png"></body></html>"#;
        let out = rewrite_html(html);
        assert!(!out.contains("<script") && !out.contains("onload") && !out.contains("<base"));
        assert!(!out.contains("http-equiv"));
        assert!(!out.contains("\"http://"), "{out}");
        assert!(out.contains("href=\"/external?url=http%3A%2F%2Fexample%2Einvalid%2F\""));
        assert!(out.contains("href=\"page2.html\"") && out.contains("src=\"cat.png\""));
        assert!(out.contains("b.png 2x"));
    }
}
