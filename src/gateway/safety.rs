//! What keeps a page from reaching past the gateway: the headers every
//! response carries, and the checks every request passes.

use axum::extract::{Request, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::pages::{error_page, Problem};
use super::State;

/// No script, no plugin, nothing from another origin, no `<base>`, forms
/// only to the gateway, not framed by another site.
pub const CSP: &str = "default-src 'self'; script-src 'none'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'self'; img-src 'self'; \
     media-src 'self'; font-src 'self'; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; worker-src 'none'; manifest-src 'none'";

/// Whether a `Host` header names this machine: a loopback address or
/// `localhost`, with or without a port.
pub fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [::1]:8888
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request comes from the gateway's own pages: by the browser's
/// `Sec-Fetch-Site` when it sends one (Chromium sends `Origin: null` with
/// `Referrer-Policy: no-referrer`), else by `Origin` when there is one.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(o), Some(h)) => o.strip_prefix("http://") == Some(h),
        _ => false,
    }
}

/// The middleware: refuse foreign hosts and cross-origin posts, then add
/// the safety headers to whatever the handler answered.
pub(crate) async fn guard(
    AxumState(state): AxumState<State>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let mut response = if !state.config.public && !loopback_host(host) {
        error_page(
            StatusCode::MISDIRECTED_REQUEST,
            Problem::Refused,
            "The gateway only answers requests addressed to this machine (localhost); \
             this one named another host, as a DNS-rebinding attack would.",
        )
    } else if req.method() == Method::POST && !same_origin(headers) {
        error_page(
            StatusCode::FORBIDDEN,
            Problem::Refused,
            "A form on another site tried to post to the gateway; refused.",
        )
    } else {
        next.run(req).await
    };
    add_headers(response.headers_mut());
    response.into_response()
}

/// The headers every response carries.
pub fn add_headers(h: &mut HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_DNS_PREFETCH_CONTROL, "off"),
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_pass() {
        for ok in [
            "127.0.0.1:8888",
            "localhost:8888",
            "[::1]:8888",
            "localhost",
            "127.0.0.2",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8888",
            "10.0.0.1",
            "",
            "localhost.evil.example",
            "[::2]:1",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn the_policy_forbids_scripts_and_other_origins() {
        assert!(CSP.contains("script-src 'none'") && CSP.contains("default-src 'self'"));
        assert!(!CSP.contains("http") && !CSP.contains('*'));
    }
}
