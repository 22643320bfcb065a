//! The pages a person sees (SPEC §6 error pages, §12 branding): one HTML shell for the login
//! page and every error page, with the operator's title, logo, accent colour and extra CSS.
//! No external assets, no JavaScript, readable at 320 px and in dark mode. Builds strings and
//! responses only: no I/O (the logo and CSS are read when the config loads).

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use crate::body::{full, Body};

/// `ui:` in the config, loaded.
#[derive(Debug, Clone)]
pub struct Branding {
    /// The pages' title (`ui.title`, default "Sign in").
    pub title: String,
    /// The logo's bytes and content type, served at `{auth_prefix}/ui/logo`.
    pub logo: Option<(bytes::Bytes, &'static str)>,
    /// A CSS colour for buttons and links (`#rgb` or `#rrggbb`).
    pub accent: String,
    /// Appended to the built-in styles.
    pub css: String,
}

impl Default for Branding {
    fn default() -> Self {
        Branding {
            title: "Sign in".into(),
            logo: None,
            accent: "#2d5be3".into(),
            css: String::new(),
        }
    }
}

/// Where the logo is served, under `auth_prefix`.
pub const LOGO_PATH: &str = "/ui/logo";

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--text:#1d1f23;--muted:#5b6170;--line:#c4c8d0;--err-bg:#fde8e8;--err:#a4161a}
@media (prefers-color-scheme:dark){:root{--bg:#15171b;--card:#22252b;--text:#e8eaee;--muted:#a3a9b6;--line:#4a4f5a;--err-bg:#4a1d20;--err:#ffb3b3}}
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;background:var(--bg);color:var(--text);margin:0;padding:1rem;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:var(--card);padding:2rem clamp(1.25rem,5vw,2.5rem);border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.2);width:100%;max-width:24rem}
.logo{display:block;max-width:100%;max-height:4rem;margin:0 0 1rem}
h1{font-size:1.4rem;margin:0 0 .4rem}
h2{font-size:1.05rem;font-weight:600;margin:0 0 1.2rem;color:var(--muted)}
p{line-height:1.45}
.muted{color:var(--muted);font-size:.9rem}
label{display:block;margin:.8rem 0 .3rem;font-weight:600}
input{width:100%;padding:.55rem;font-size:1rem;border:1px solid var(--line);border-radius:4px;background:var(--card);color:var(--text)}
button,.button{display:block;text-align:center;text-decoration:none;margin-top:1rem;width:100%;padding:.65rem;font-size:1rem;border:0;border-radius:4px;background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:transparent;color:var(--accent);border:1px solid var(--accent)}
.providers .button{margin-top:.6rem}
.divider{display:flex;align-items:center;gap:.6rem;color:var(--muted);font-size:.9rem;margin:1.4rem 0 0}
.divider::before,.divider::after{content:'';flex:1;border-top:1px solid var(--line)}
a{color:var(--accent)}
button:focus-visible,a:focus-visible,input:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.error{color:var(--err);background:var(--err-bg);padding:.6rem;border-radius:4px}
code{font-size:.9em;word-break:break-all}
";

/// A whole page: `heading`, an optional sub-heading, and `body` (HTML the caller escaped).
pub fn page(
    branding: &Branding,
    auth_prefix: &str,
    heading: &str,
    sub: Option<&str>,
    body: &str,
) -> String {
    page_with_head(branding, auth_prefix, heading, sub, body, "")
}

/// [`page`] with more in its `<head>` (HTML the caller escaped).
fn page_with_head(
    branding: &Branding,
    auth_prefix: &str,
    heading: &str,
    sub: Option<&str>,
    body: &str,
    head: &str,
) -> String {
    let logo = match branding.logo {
        Some(_) => format!(
            "<img class=\"logo\" src=\"{}{LOGO_PATH}\" alt=\"\">",
            escape(auth_prefix)
        ),
        None => String::new(),
    };
    let sub = sub
        .map(|s| format!("<h2>{}</h2>", escape(s)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n{head}<style>\n:root{{--accent:{accent}}}\n{STYLE}{css}\n</style>\n\
         </head>\n<body>\n<main>\n{logo}<h1>{heading}</h1>\n{sub}{body}\n</main>\n</body>\n</html>\n",
        title = escape(&branding.title),
        accent = branding.accent,
        css = branding.css,
        heading = escape(heading),
    )
}

/// The page needs nothing from anywhere: no scripts, no frames, forms only to us, images
/// (the logo) only from us.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML response with the headers every page of ours carries.
pub fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on the
    // form POST, which the cross-site check rightly refuses (found by the browser test).
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// What an error page needs besides the error: who is signed in (403), the request id, where
/// the gateway's own pages live, and the path to come back to.
#[derive(Debug, Clone, Copy)]
pub struct ErrorPage<'a> {
    pub branding: &'a Branding,
    pub auth_prefix: &'a str,
    pub request_id: &'a str,
    pub user: Option<&'a str>,
    /// The request's path and query, for "sign in as someone else" to come back to.
    pub back_to: &'a str,
    /// Origins the *Sign out* forms are sent on to besides ours (the providers' logout,
    /// [`crate::oidc::Oidc::logout_origins`]); empty for none.
    pub sign_out_origins: &'a str,
}

/// What the person can do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Fix the address or go back.
    None,
    /// Sign out, or sign in as someone else (403).
    SwitchUser,
    /// Try again after this many seconds (429).
    WaitSeconds(u64),
    /// Try again, quoting the request id (5xx).
    TryAgain,
    /// Start over from the login page (a failed sign-in through a provider).
    SignInAgain,
}

/// An error page: `status`, one sentence of what happened, and what the person can do.
pub fn error_page(
    status: StatusCode,
    sentence: &str,
    remedy: Remedy,
    at: ErrorPage<'_>,
) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut body = format!("<p>{}</p>\n", escape(sentence));
    let prefix = escape(at.auth_prefix);
    match remedy {
        Remedy::None => body.push_str("<p class=\"muted\">Check the address, or go back.</p>\n"),
        Remedy::SwitchUser => {
            if let Some(user) = at.user {
                body.push_str(&format!(
                    "<p>You are signed in as <strong>{}</strong>.</p>\n",
                    escape(user)
                ));
            }
            // Sign out, then the login page, then back here. `switch_account`: a provider
            // asked from that login page is asked for another account too, not only for its
            // session (`endpoints::oidc::start`).
            let back: String = form_urlencoded::byte_serialize(at.back_to.as_bytes()).collect();
            let switch = format!("{}/login?rd={back}&switch_account=1", at.auth_prefix);
            let switch: String = form_urlencoded::byte_serialize(switch.as_bytes()).collect();
            body.push_str(&format!(
                "<form method=\"post\" action=\"{prefix}/logout\"><button type=\"submit\">Sign out</button></form>\n\
                 <form method=\"post\" action=\"{prefix}/logout?rd={}\"><button class=\"secondary\" type=\"submit\">Sign in as someone else</button></form>\n",
                escape(&switch)
            ));
        }
        Remedy::WaitSeconds(seconds) => body.push_str(&format!(
            "<p>Try again in {}.</p>\n",
            escape(&human_wait(seconds))
        )),
        Remedy::SignInAgain => body.push_str(&format!(
            "<p><a href=\"{prefix}/login\">Back to sign-in</a></p>\n"
        )),
        Remedy::TryAgain => body.push_str(
            "<p>Try again in a moment. If it keeps happening, tell the site's operator the request id below.</p>\n",
        ),
    }
    body.push_str(&format!(
        "<p class=\"muted\">Request id: <code>{}</code></p>",
        escape(at.request_id)
    ));
    let mut response = html(
        status,
        page(
            at.branding,
            at.auth_prefix,
            &format!("{} {reason}", status.as_u16()),
            Some(&at.branding.title),
            &body,
        ),
    );
    if remedy == Remedy::SwitchUser {
        allow_sign_out_redirect(&mut response, at.sign_out_origins);
    }
    response
}

/// For a page with a *Sign out* form: the logout it posts to sends a provider's session on
/// to the provider (`logout: idp`), and Chromium stops a form's redirect that the page's
/// `form-action` does not allow; so `origins` (space separated, maybe none) join `'self'`.
fn allow_sign_out_redirect(response: &mut Response<Body>, origins: &str) {
    if origins.is_empty() {
        return;
    }
    let csp = PAGE_CSP.replacen(
        "form-action 'self'",
        &format!("form-action 'self' {origins}"),
        1,
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_SECURITY_POLICY, v);
    }
}

/// What the page that asks before signing out shows.
#[derive(Debug, Clone, Copy)]
pub struct SignOutQuestion<'a> {
    pub user: Option<&'a str>,
    /// Every session of the user (`all=true`), not only this one.
    pub everywhere: bool,
    /// The logout's query as the link sent it (`all`, `rd`), for the form to post again.
    pub query: Option<&'a str>,
    /// As [`ErrorPage::sign_out_origins`].
    pub sign_out_origins: &'a str,
}

/// The answer to a `GET /logout` another site started (a link or a redirect from a page
/// elsewhere, `Sec-Fetch-Site: cross-site`): nothing is ended yet; the person is asked, and
/// a *Sign out* button posts the same logout from this page — a same-origin request the
/// cross-site check lets through. So a foreign page cannot end anyone's session by linking
/// to the logout, and a person who followed a real *Sign out* link is one click from it.
pub fn sign_out_question(
    branding: &Branding,
    auth_prefix: &str,
    q: SignOutQuestion<'_>,
) -> Response<Body> {
    let prefix = escape(auth_prefix);
    let mut body = String::from("<p>A page on another site sent you here to sign out.</p>\n");
    if let Some(user) = q.user {
        body.push_str(&format!(
            "<p>You are signed in as <strong>{}</strong>.</p>\n",
            escape(user)
        ));
    }
    let action = match q.query {
        Some(query) if !query.is_empty() => format!("{prefix}/logout?{}", escape(query)),
        _ => format!("{prefix}/logout"),
    };
    let button = if q.everywhere {
        "Sign out everywhere"
    } else {
        "Sign out"
    };
    body.push_str(&format!(
        "<form method=\"post\" action=\"{action}\"><button type=\"submit\">{button}</button></form>\n\
         <p><a href=\"/\">Stay signed in</a></p>\n"
    ));
    let mut response = html(
        StatusCode::OK,
        page(
            branding,
            auth_prefix,
            "Sign out?",
            Some(&branding.title),
            &body,
        ),
    );
    allow_sign_out_redirect(&mut response, q.sign_out_origins);
    response
}

/// A page that sends the browser on to `target` (a local path) by itself, for a sign-in that
/// came back from an identity provider while cookies are `SameSite=Strict`: a redirect at
/// the end of a chain that began on the provider's site is cross-site, so the browser would
/// not send the new Strict cookies with it and the person would land on the login page
/// again. A navigation this page starts is same-site. No script: a `refresh` and a link.
pub fn continue_page(branding: &Branding, auth_prefix: &str, target: &str) -> Response<Body> {
    let target = escape(target);
    html(
        StatusCode::OK,
        page_with_head(
            branding,
            auth_prefix,
            "Signed in",
            Some(&branding.title),
            &format!("<p><a class=\"button\" href=\"{target}\">Continue</a></p>\n"),
            &format!("<meta http-equiv=\"refresh\" content=\"0; url={target}\">\n"),
        ),
    )
}

/// "14 minutes", "1 minute", "30 seconds": a wait rounded up to what a person reads.
pub fn human_wait(seconds: u64) -> String {
    match seconds {
        0..=1 => "a second".into(),
        2..=59 => format!("{seconds} seconds"),
        _ => {
            let minutes = seconds.div_ceil(60);
            if minutes == 1 {
                "1 minute".into()
            } else {
                format!("{minutes} minutes")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_like_a_person_would_say_them() {
        assert_eq!(human_wait(1), "a second");
        assert_eq!(human_wait(30), "30 seconds");
        assert_eq!(human_wait(60), "1 minute");
        assert_eq!(human_wait(61), "2 minutes");
        assert_eq!(human_wait(900), "15 minutes");
    }

    #[test]
    fn every_text_is_escaped() {
        let b = Branding {
            title: "<Acme & co>".into(),
            ..Branding::default()
        };
        let html = page(&b, "/.gatehouse", "<h>", Some("\"s\""), "");
        assert!(html.contains("&lt;Acme &amp; co&gt;"));
        assert!(html.contains("&lt;h&gt;") && html.contains("&quot;s&quot;"));
        assert!(!html.contains("<Acme"));
    }

    #[test]
    fn only_a_sign_out_page_lets_its_forms_go_on_to_the_provider() {
        let b = Branding::default();
        let at = |sign_out_origins| ErrorPage {
            branding: &b,
            auth_prefix: "/.gatehouse",
            request_id: "r1",
            user: Some("grace"),
            back_to: "/admin",
            sign_out_origins,
        };
        let csp = |r: &Response<Body>| {
            r.headers()[http::header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_string()
        };
        let forbidden = StatusCode::FORBIDDEN;
        let r = error_page(
            forbidden,
            "No.",
            Remedy::SwitchUser,
            at("https://idp.example"),
        );
        assert!(
            csp(&r).contains("form-action 'self' https://idp.example;"),
            "{}",
            csp(&r)
        );
        // Without a provider's logout, and on pages without the forms: ours only.
        let r = error_page(forbidden, "No.", Remedy::SwitchUser, at(""));
        assert_eq!(csp(&r), PAGE_CSP);
        let r = error_page(forbidden, "No.", Remedy::None, at("https://idp.example"));
        assert_eq!(csp(&r), PAGE_CSP);
        // The page that asks before a sign-out another site started posts to the same logout.
        let ask = |query, sign_out_origins| {
            sign_out_question(
                &b,
                "/.gatehouse",
                SignOutQuestion {
                    user: Some("<grace>"),
                    everywhere: false,
                    query,
                    sign_out_origins,
                },
            )
        };
        let r = ask(Some("rd=\"><script>"), "https://idp.example");
        assert!(
            csp(&r).contains("form-action 'self' https://idp.example;"),
            "{}",
            csp(&r)
        );
        let body = String::from_utf8(
            futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(r.into_body()))
                .unwrap()
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(
            !body.contains("<script>") && !body.contains("<grace>"),
            "{body}"
        );
        assert!(
            body.contains("action=\"/.gatehouse/logout?rd=&quot;&gt;&lt;script&gt;\""),
            "{body}"
        );
        assert_eq!(csp(&ask(None, "")), PAGE_CSP);
    }
}
