use std::path::Path;
use std::sync::OnceLock;

use super::*;

fn hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| crate::authenticate::users::hash_password(b"pw").unwrap())
}

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("0123456789abcdef0123456789abcdef".into()),
        _ => None,
    }
}

fn yaml(body: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
tokens:
  algorithm: HS256
  secret: "${{SECRET}}"
users:
  - username: alice
    password_hash: "{}"
    roles: [admin]
{body}"#,
        hash()
    )
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    crate::install_crypto_providers();
    parse(text, Path::new("gateway.yaml"), env)
}

fn only_error(text: &str) -> ConfigError {
    let errs = load(text).expect_err("config should be refused").0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn a_minimal_config_loads_with_defaults() {
    let c = load(&yaml(
        "routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n",
    ))
    .unwrap();
    assert_eq!(c.auth_prefix, "/.gatehouse");
    assert_eq!(c.tokens.access_ttl, 300);
    assert_eq!(c.tokens.refresh_ttl, 7 * 86_400);
    assert_eq!(c.cookies.access_name, "__Host-gatehouse_access");
    assert_eq!(c.limits.max_request_header_bytes, 16 * 1024);
    assert_eq!(c.routes.routes().len(), 1);
    assert_eq!(c.users.len(), 1);
}

#[test]
fn a_misspelled_key_is_named_with_its_line() {
    let e = only_error(&yaml(
        "routes:\n  - name: app\n    upstram: \"http://127.0.0.1:3000\"\n",
    ));
    assert_eq!((e.file.as_str(), e.line, e.column), ("gateway.yaml", 12, 5));
    assert_eq!(e.key, "routes[0].upstram");
    assert!(
        e.message.contains("unknown field `upstram`"),
        "{}",
        e.message
    );
    let shown = e.to_string();
    assert!(
        shown.starts_with("gateway.yaml:12:5: routes[0].upstram: "),
        "{shown}"
    );
}

#[test]
fn an_unset_variable_is_named() {
    let text = yaml("").replace("${SECRET}", "${NOT_SET}");
    let e = only_error(&text);
    assert_eq!(e.line, 5);
    assert_eq!(e.key, "tokens.secret");
    assert!(e.message.contains("`NOT_SET`"), "{}", e.message);
}

#[test]
fn bad_durations_and_sizes_point_at_the_value() {
    let e = only_error(&yaml("").replace(
        "algorithm: HS256",
        "algorithm: HS256\n  access_ttl: 5 minutes",
    ));
    assert_eq!((e.line, e.key.as_str()), (5, "tokens.access_ttl"));
    let e = only_error(&yaml("").replace(
        "  listen: \"127.0.0.1:0\"",
        "  listen: \"127.0.0.1:0\"\n  limits:\n    max_login_body_bytes: 8 KB please",
    ));
    assert_eq!(e.key, "server.limits.max_login_body_bytes");
}

#[test]
fn every_load_rule_is_enforced_and_all_errors_are_reported() {
    let text = yaml(
        "cookies:\n  secure: false\n  same_site: none\nroutes:\n  - name: a\n  - name: a\n    upstream: \"http://127.0.0.1:1\"\n",
    );
    let errs = load(&text).unwrap_err().0;
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"cookies.same_site"), "{keys:?}");
    assert!(keys.contains(&"routes[0].upstream"), "{keys:?}");
    assert!(keys.contains(&"routes[1].name"), "{keys:?}");
    assert!(errs.iter().all(|e| e.line > 0), "{errs:?}");
}

#[test]
fn short_secrets_bad_hashes_and_duplicate_users_are_refused() {
    let e = only_error(&yaml("").replace("${SECRET}", "too-short"));
    assert_eq!(e.key, "tokens.secret");
    assert!(e.message.contains("32 bytes"));

    let e = only_error(&yaml("").replace(hash(), "plaintext-password"));
    assert_eq!(e.key, "users[0].password_hash");

    let e = only_error(&yaml(&format!(
        "  - username: \" ALICE \"\n    password_hash: \"{}\"\n",
        hash()
    )));
    assert_eq!(e.key, "users[1].username");
    assert!(e.message.contains("same user"), "{}", e.message);
}

#[test]
fn key_files_must_parse_and_match_the_algorithm() {
    let dir = std::env::temp_dir().join(format!("gatehouse-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rsa = crate::authenticate::keygen::generate(jsonwebtoken::Algorithm::RS256).unwrap();
    std::fs::write(dir.join("rsa.pem"), rsa).unwrap();
    let text = yaml("").replace(
        "  algorithm: HS256\n  secret: \"${SECRET}\"",
        "  algorithm: EdDSA\n  signing_key: rsa.pem",
    );
    crate::install_crypto_providers();
    let errs = parse(&text, &dir.join("gateway.yaml"), env).unwrap_err().0;
    assert_eq!(errs[0].key, "tokens.signing_key");
    assert!(errs[0].message.contains("Ed25519"), "{}", errs[0].message);
    let text = text.replace("rsa.pem", "missing.pem");
    let errs = parse(&text, &dir.join("gateway.yaml"), env).unwrap_err().0;
    assert!(
        errs[0].message.contains("cannot read"),
        "{}",
        errs[0].message
    );
}

#[test]
fn unknown_roles_warn_and_unbuilt_features_refuse() {
    let c = load(&yaml(
        "routes:\n  - name: a\n    upstream: \"http://127.0.0.1:1\"\n    allow_roles: [ghost]\n",
    ))
    .unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("ghost")),
        "{:?}",
        c.warnings
    );
    let e = only_error(&yaml("store:\n  backend: redis\n"));
    assert_eq!(e.key, "store.redis");
    let e = only_error(&yaml(
        "store:\n  backend: redis\n  path: x.db\n  redis:\n    url: \"redis://127.0.0.1:1/0\"\n",
    ));
    assert_eq!(e.key, "store.path");
    let c = load(&yaml(
        "routes:\n  - name: a\n    upstream: \"https://app.internal\"\n",
    ))
    .unwrap();
    assert_eq!(
        c.routes.routes()[0].upstream.scheme,
        http::uri::Scheme::HTTPS
    );
    let e = only_error(&yaml(
        "routes:\n  - name: a\n    upstream: \"ftp://127.0.0.1:1\"\n",
    ));
    assert!(e.message.contains("http:// or https://"), "{}", e.message);
}

#[test]
fn users_file_entries_join_inline_users() {
    let dir = std::env::temp_dir().join(format!("gatehouse-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("users.yaml"),
        format!(
            "users:\n  - username: bob\n    password_hash: \"{}\"\n    typo: 1\n",
            hash()
        ),
    )
    .unwrap();
    crate::install_crypto_providers();
    let text = yaml("users_file: users.yaml\n");
    let errs = parse(&text, &dir.join("gateway.yaml"), env).unwrap_err().0;
    assert!(errs[0].file.ends_with("users.yaml"), "{errs:?}");
    assert_eq!((errs[0].line, errs[0].key.as_str()), (4, "users[0].typo"));
    std::fs::write(
        dir.join("users.yaml"),
        format!(
            "users:\n  - username: bob\n    password_hash: \"{}\"\n",
            hash()
        ),
    )
    .unwrap();
    let c = parse(&text, &dir.join("gateway.yaml"), env).unwrap();
    assert!(c.users.get("bob").is_some() && c.users.get("alice").is_some());
}

#[test]
fn loose_name_sets_match_the_allocating_comparison() {
    let long = "x-".repeat(40);
    let entries = [
        "X-Forwarded-User",
        "x_remote_*",
        "Remote-User",
        "x-auth-request-*",
        &long,
    ];
    let set = LooseNames::new(entries);
    for name in [
        "x-forwarded-user",
        "x_forwarded_user",
        "X_FORWARDED-USER",
        "x-forwarded-users",
        "x-forwarded-usex",
        "x-remote-",
        "x-remote-anything",
        "X_Remote_Groups",
        "x-remot",
        "remote-user",
        "remote_user",
        "remote-users",
        "x-auth-request-email",
        "x-auth-request",
        "_x_remote_y",
        "accept",
        "R",
        "",
        &long,
        &long[..63],
        &long[..64],
        &format!("{long}x"),
    ] {
        let loose = loose_header_name(name);
        let expected = entries.iter().any(|e| {
            let e = loose_header_name(e);
            match e.strip_suffix('*') {
                Some(prefix) => loose.starts_with(prefix),
                None => loose == e,
            }
        });
        assert_eq!(set.contains(name), expected, "{name}");
        assert_eq!(loose_name(name), loose, "{name}");
    }
    // `*` alone removes every name.
    let all = LooseNames::new(["*"]);
    assert!(["accept", "x", "_", "Z-1"].iter().all(|n| all.contains(n)));
}

#[test]
fn yaml_mistakes_are_named_in_the_operator_s_words_with_the_fix() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    // A section written twice.
    let e = only_error(&format!("{base}server:\n  listen: \"127.0.0.1:1\"\n"));
    assert_eq!(e.key, "server");
    assert!(e.message.contains("`server` is written twice"), "{e}");
    assert!(!e.message.contains("DuplicateKeyPolicy"), "{e}");
    // One value where a list belongs.
    let e = only_error(&base.replace("roles: [", "roles: admin\n    x: ["));
    assert_eq!(e.key, "users[0].roles");
    assert!(e.message.contains("`roles: [admin]`"), "{e}");
    // One value where a section belongs.
    let e = only_error(&format!("{base}store: memory\n"));
    assert!(e.message.contains("`store` is a section"), "{e}");
    // The snippet names the file, not `<input>`.
    let e = only_error(&base.replace("    upstream:", "    upstrem:"));
    let snippet = e.snippet.clone().expect("a snippet");
    assert!(
        snippet.contains("gateway.yaml:") && !snippet.contains("<input>"),
        "{snippet}"
    );
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}

#[test]
fn a_number_or_switch_of_the_wrong_kind_is_named_in_words() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    for (value, words) in [
        (
            "\"five\"",
            "expected a whole number from 0 to 4294967295, not `five`",
        ),
        (
            "-1",
            "expected a whole number from 0 to 4294967295, not `-1`",
        ),
        (
            "99999999999",
            "expected a whole number from 0 to 4294967295, not `99999999999`",
        ),
    ] {
        let e = only_error(&format!("{base}login:\n  max_failures: {value}\n"));
        assert_eq!(e.key, "login.max_failures");
        assert_eq!(e.message, words, "{e}");
        assert!(!e.message.contains("u32"), "{e}");
        let snippet = e.snippet.clone().expect("a snippet");
        assert!(!snippet.contains("invalid u32"), "{snippet}");
    }
    let e = only_error(&format!("{base}    websocket: maybe\n"));
    assert_eq!(e.key, "routes[0].websocket");
    assert_eq!(e.message, "expected true or false, not `maybe`", "{e}");
}

#[test]
fn a_rule_the_parser_cannot_place_is_placed_at_its_key_or_section() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    // A value out of range: at its key.
    let text = format!("{base}login:\n  max_concurrent_hashes: 0\n");
    let e = only_error(&text);
    assert_eq!(e.key, "login.max_concurrent_hashes");
    let line = text
        .lines()
        .position(|l| l.contains("max_concurrent_hashes"))
        .unwrap();
    assert_eq!((e.line, e.column), (line as u64 + 1, 3), "{e}");
    // A required key left out: at its section.
    let text = base.replace("  secret: \"${SECRET}\"\n", "");
    let e = only_error(&text);
    assert_eq!(e.key, "tokens.secret");
    let line = text.lines().position(|l| l == "tokens:").unwrap();
    assert_eq!((e.line, e.column), (line as u64 + 1, 1), "{e}");
    assert!(e
        .to_string()
        .starts_with(&format!("gateway.yaml:{}:1: tokens.secret: ", line + 1)));
}

#[test]
fn a_misspelt_log_level_is_refused_rather_than_silencing_the_logs() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    for bad in ["infp", "loud", "gatehouse", "info,hyperr", ""] {
        let e = only_error(&format!("{base}logging:\n  level: \"{bad}\"\n"));
        assert_eq!(e.key, "logging.level", "{bad}: {e}");
        assert!(e.message.contains("is not a log level"), "{e}");
    }
    for good in ["info", "WARN", "off", "gatehouse=debug", "info,hyper=warn"] {
        let config = load(&format!("{base}logging:\n  level: \"{good}\"\n"));
        assert!(config.is_ok(), "{good}: {:?}", config.err());
    }
}

#[test]
fn a_route_under_the_auth_prefix_is_refused_because_it_could_never_be_used() {
    for shadowed in ["/.gatehouse", "/.gatehouse/app"] {
        let text = yaml(&format!(
            "routes:\n  - name: app\n    path_prefix: \"{shadowed}\"\n    upstream: \"http://127.0.0.1:3000\"\n"
        ));
        let e = only_error(&text);
        assert_eq!(e.key, "routes[0].path_prefix", "{e}");
        assert!(e.message.contains("server.auth_prefix"), "{e}");
        assert!(e.line > 0, "{e}");
    }
    // Only on a segment boundary, as requests are matched.
    let text = yaml(
        "routes:\n  - name: app\n    path_prefix: \"/.gatehouse-old\"\n    upstream: \"http://127.0.0.1:3000\"\n",
    );
    assert!(load(&text).is_ok());
}

#[test]
fn trusting_every_address_is_warned_about() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    let with = |nets: &str| {
        let text = base.replace(
            "  listen: \"127.0.0.1:0\"\n",
            &format!("  listen: \"127.0.0.1:0\"\n  trusted_proxies: [{nets}]\n"),
        );
        load(&text).expect("valid").warnings
    };
    for everyone in ["\"0.0.0.0/0\"", "\"10.0.0.0/8\", \"::/0\""] {
        let warnings = with(everyone);
        assert!(
            warnings.iter().any(|w| w.contains("trusts every address")),
            "{everyone}: {warnings:?}"
        );
    }
    let warnings = with("\"10.0.0.0/8\", \"127.0.0.1\"");
    assert!(
        !warnings.iter().any(|w| w.contains("trusted_proxies")),
        "{warnings:?}"
    );
}

#[test]
fn a_refresh_token_that_dies_before_its_access_token_is_warned_about() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    let with = |ttls: &str| {
        let text = base.replace(
            "  algorithm: HS256\n",
            &format!("  algorithm: HS256\n{ttls}"),
        );
        load(&text).expect("valid").warnings
    };
    let warnings = with("  access_ttl: 1h\n  refresh_ttl: 30m\n");
    assert!(
        warnings.iter().any(
            |w| w.starts_with("tokens.refresh_ttl: 30m is shorter than tokens.access_ttl (1h)")
        ),
        "{warnings:?}"
    );
    for fine in [
        "  access_ttl: 1h\n  refresh_ttl: 1h\n",
        "  access_ttl: 5m\n",
    ] {
        let warnings = with(fine);
        assert!(
            !warnings.iter().any(|w| w.contains("refresh_ttl")),
            "{fine}: {warnings:?}"
        );
    }
}

#[test]
fn a_config_without_users_says_nobody_can_sign_in() {
    let with_users = load(&yaml(
        "routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n",
    ))
    .unwrap();
    assert!(!with_users.warnings.iter().any(|w| w.contains("no users")));
    let text = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    let start = text.find("users:").unwrap();
    let end = text[start..].find("routes:").unwrap() + start;
    let without = load(&format!("{}{}", &text[..start], &text[end..])).unwrap();
    assert!(
        without
            .warnings
            .iter()
            .any(|w| w.contains("no users") && w.contains("gatehouse hash-password")),
        "{:?}",
        without.warnings
    );
}

#[test]
fn an_unclosed_quote_and_an_over_indented_key_are_named_where_they_are() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    // The quote opened on the password_hash line closes on a later line; the parser stumbles
    // there, but the error names the line that opened it.
    let unclosed = base.replacen("password_hash: \"", "password_hash: \"x\n    roles2: \"", 1);
    let line = unclosed
        .lines()
        .position(|l| l.contains("password_hash"))
        .unwrap() as u64
        + 1;
    let e = only_error(&unclosed);
    assert_eq!(e.line, line, "{e}");
    assert_eq!(e.key, "users[0].password_hash", "{e}");
    assert!(e.message.contains("does not close"), "{e}");
    // A key indented under a `key: value` line.
    let deeper = base.replace("    upstream:", "      upstream:");
    let line = deeper
        .lines()
        .position(|l| l.contains("upstream:"))
        .unwrap() as u64
        + 1;
    let e = only_error(&deeper);
    assert_eq!(e.line, line, "{e}");
    assert_eq!(e.key, "routes[0].upstream", "{e}");
    assert!(e.message.contains("indent it exactly like `name`"), "{e}");
}

#[test]
fn a_tab_an_empty_file_and_a_file_that_is_not_sections_are_named_in_words() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    let tabbed = base.replace("    upstream:", "\tupstream:");
    let e = only_error(&tabbed);
    let line = tabbed
        .lines()
        .position(|l| l.contains("upstream:"))
        .unwrap() as u64
        + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains("indented with a tab"), "{e}");
    // The parser stumbled on the line above: no snippet marking that one.
    assert!(e.snippet.is_none(), "{e:?}");
    let tabbed = base.replace("  listen:", "\tlisten:");
    let e = only_error(&tabbed);
    let line = tabbed.lines().position(|l| l.contains("listen:")).unwrap() as u64 + 1;
    assert_eq!(e.line, line, "{e}");
    let snippet = e.snippet.clone().expect("a snippet");
    assert!(snippet.contains("indented with a tab") && !snippet.contains("disallowed"));
    for empty in ["", "\n", "# nothing yet\n\n", "---\n"] {
        let e = only_error(empty);
        assert!(e.message.starts_with("the file is empty"), "{empty:?}: {e}");
        assert_eq!(e.line, 0, "{e}");
        assert!(e.snippet.is_none(), "{e:?}");
    }
    for shape in ["- server\n- routes\n", "hello\n"] {
        let e = only_error(shape);
        assert!(e.message.contains("must be sections"), "{shape:?}: {e}");
    }
    // A users file is told its own shape.
    let dir = std::env::temp_dir().join(format!("gatehouse-shape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("users.yaml"), "- username: bob\n").unwrap();
    let text = yaml("users_file: users.yaml\n");
    let errs = parse(&text, &dir.join("gateway.yaml"), env).unwrap_err().0;
    assert!(errs[0].file.ends_with("users.yaml"), "{errs:?}");
    assert!(
        errs[0].message.contains("one section, `users:`"),
        "{errs:?}"
    );
}

#[test]
fn common_yaml_slips_are_named_on_their_line_with_the_fix() {
    let base = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    let line_of = |text: &str, needle: &str| {
        text.lines().position(|l| l.contains(needle)).unwrap() as u64 + 1
    };
    let cases = [
        // (edit, the line it is on, key, words)
        (
            base.replace("  listen: \"", "  listen:\""),
            "listen:",
            "server.listen",
            "needs a space after the colon: write `listen: \"127.0.0.1:0\"`",
        ),
        (
            base.replace("roles: [admin]", "roles: [admin"),
            "roles:",
            "users[0].roles",
            "opens a bracket it does not close",
        ),
        (
            base.replace("    upstream:", "   upstream:"),
            "upstream:",
            "routes[0].upstream",
            "`upstream` starts in column 4, where no key of its section above it does",
        ),
        (
            base.replace("  algorithm: HS256", "    algorithm: HS256"),
            "secret:",
            "tokens.secret",
            "`secret` starts in column 3, where no key of its section above it does",
        ),
        (
            base.replace("tokens:\n", "tokens\n"),
            "tokens",
            "",
            "`tokens` has no `:` after it; write `tokens:`",
        ),
        (
            base.replace(
                "upstream: \"http://127.0.0.1:3000\"",
                "upstream: [\"http://127.0.0.1:3000\"]",
            ),
            "upstream:",
            "routes[0].upstream",
            "`upstream` takes one value (text in quotes), not a list or a section",
        ),
    ];
    // A flow list that spans lines is closed: a later slip is not blamed on it.
    let spanning = base
        .replace("roles: [admin]", "roles: [admin,\n      staff]")
        .replace("    upstream: \"", "    upstream:\"");
    let e = only_error(&spanning);
    assert!(e.message.contains("needs a space after the colon"), "{e}");
    for (text, needle, key, words) in cases {
        let e = only_error(&text);
        assert_eq!(e.line, line_of(&text, needle), "{e}");
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(words), "{e}");
    }
}

#[test]
fn the_express_lane_is_a_config_key_the_environment_can_switch_off() {
    let text = yaml("routes:\n  - name: app\n    upstream: \"http://127.0.0.1:3000\"\n");
    assert!(load(&text).unwrap().express_lane, "on by default");
    let off = text.replace("server:\n", "server:\n  express_lane: false\n");
    assert!(!load(&off).unwrap().express_lane);
    let lookup = |name: &str| match name {
        "GATEHOUSE_EXPRESS_LANE" => Some("0".to_string()),
        other => env(other),
    };
    let overridden = parse(&text, Path::new("gateway.yaml"), lookup).unwrap();
    assert!(!overridden.express_lane, "the environment switches it off");
}

/// The `oidc:` section with `public_url` in `server` (unless `no_public_url`).
fn oidc_yaml(providers: &str, no_public_url: bool) -> String {
    let text = yaml(&format!("oidc:\n  providers:\n{providers}"));
    if no_public_url {
        text
    } else {
        text.replace(
            "  listen: \"127.0.0.1:0\"\n",
            "  listen: \"127.0.0.1:0\"\n  public_url: \"https://app.example.com\"\n",
        )
    }
}

const GOOD_PROVIDER: &str = "    - id: corp\n      name: \"Corp SSO\"\n      issuer: \"https://idp.example.com/realms/corp\"\n      client_id: gatehouse\n";

#[test]
fn a_provider_loads_with_its_defaults_and_derived_uris() {
    let c = load(&oidc_yaml(GOOD_PROVIDER, false)).unwrap();
    let o = c.oidc.unwrap();
    assert!(o.password_login);
    let p = &o.providers[0];
    assert_eq!(p.name, "Corp SSO");
    assert_eq!(p.scopes, ["openid", "email", "profile"]);
    assert_eq!(p.username_claim, "email");
    assert!(p.require_verified_email);
    assert_eq!(p.recheck_interval, 300_000);
    assert!(!p.logout_at_idp);
    assert_eq!(
        p.redirect_uri,
        "https://app.example.com/.gatehouse/oidc/corp/callback"
    );
    assert_eq!(
        p.backchannel_uri,
        "https://app.example.com/.gatehouse/oidc/corp/backchannel-logout"
    );
}

#[test]
fn provider_mistakes_name_the_line_and_key() {
    for (providers, key, words) in [
        (
            GOOD_PROVIDER.replace("id: corp", "id: Corp_SSO"),
            "oidc.providers[0].id",
            "is not a provider id",
        ),
        (
            GOOD_PROVIDER.replace("https://idp.example.com", "http://idp.example.com"),
            "oidc.providers[0].issuer",
            "is not an https URL",
        ),
        (
            format!("{GOOD_PROVIDER}      scopes: [email, profile]\n"),
            "oidc.providers[0].scopes",
            "must include \"openid\"",
        ),
        (
            format!("{GOOD_PROVIDER}      logout: everywhere\n"),
            "oidc.providers[0].logout",
            "use local or idp",
        ),
        (
            format!("{GOOD_PROVIDER}      allowed_email_domains: [\"@example.com\"]\n"),
            "oidc.providers[0].allowed_email_domains",
            "without `@`",
        ),
        (
            format!(
                "{GOOD_PROVIDER}{}",
                GOOD_PROVIDER.replace("name: \"Corp SSO\"", "name: \"Again\"")
            ),
            "oidc.providers[1].id",
            "already the id",
        ),
    ] {
        let e = only_error(&oidc_yaml(&providers, false));
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(words), "{e}");
        assert!(e.line > 0, "{e}");
    }
    // A loopback http issuer is fine for development.
    load(&oidc_yaml(
        &GOOD_PROVIDER.replace("https://idp.example.com", "http://127.0.0.1:9000"),
        false,
    ))
    .unwrap();
    // Without public_url there is no redirect URI to register.
    let e = only_error(&oidc_yaml(GOOD_PROVIDER, true));
    assert_eq!(e.key, "server.public_url");
    assert!(e.message.contains("redirect URI"), "{e}");
    // An unknown key in a provider is an error like anywhere else.
    let e = only_error(&oidc_yaml(
        &format!("{GOOD_PROVIDER}      client_secrett: x\n"),
        false,
    ));
    assert!(e.message.contains("client_secrett"), "{e}");
}

#[test]
fn a_user_may_name_only_a_configured_provider_and_passwords_off_needs_one() {
    let linked = oidc_yaml(GOOD_PROVIDER, false).replace(
        "    roles: [admin]\n",
        "    roles: [admin]\n    oidc: corp\n",
    );
    let c = load(&linked).unwrap();
    assert_eq!(c.users.get("alice").unwrap().oidc.as_deref(), Some("corp"));
    let e = only_error(&linked.replace("oidc: corp\n", "oidc: other\n"));
    assert_eq!(e.key, "users[0].oidc");
    assert!(e.message.contains("no oidc.providers entry"), "{e}");
    let e = only_error(&yaml("oidc:\n  password_login: false\n"));
    assert_eq!(e.key, "oidc.password_login");
}

#[test]
fn two_providers_that_name_users_by_a_non_email_claim_are_warned_about() {
    let second = GOOD_PROVIDER.replace("id: corp", "id: other");
    let c = load(&oidc_yaml(&format!("{GOOD_PROVIDER}{second}"), false)).unwrap();
    assert!(!c.warnings.iter().any(|w| w.contains("several providers")));
    let by_name = format!("{GOOD_PROVIDER}      username_claim: preferred_username\n{second}");
    let c = load(&oidc_yaml(&by_name, false)).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("several providers") && w.contains("corp")),
        "{:?}",
        c.warnings
    );
}
