//! `ui:`: the login and error pages' title, logo, accent colour and extra CSS.

use std::path::Path;

use super::{resolve, Ctx};
use crate::config::expand::Text;
use crate::config::file::{self, S};
use crate::config::read_bounded;

/// The most bytes a logo or extra CSS file may have.
const MAX_LOGO: u64 = 512 * 1024;

const MAX_CSS: u64 = 64 * 1024;

/// A file of `ui`, read whole when it is at most `max` bytes.
fn read_asset(ctx: &mut Ctx<'_>, base: &Path, t: &S<Text>, key: &str, max: u64) -> Option<Vec<u8>> {
    let path = resolve(base, &t.value);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > max) {
        ctx.err(
            t.referenced,
            key,
            format!("`{}` is larger than {} KiB", path.display(), max / 1024),
        );
        return None;
    }
    read_bounded(&path)
        .map_err(|e| {
            ctx.err(
                t.referenced,
                key,
                format!("cannot read `{}`: {e}", path.display()),
            )
        })
        .ok()
}

/// `ui`: the title, the logo file, the accent colour and the extra CSS file.
pub(super) fn build_ui(ctx: &mut Ctx<'_>, u: &file::Ui, base: &Path) -> crate::ui::Branding {
    let mut branding = crate::ui::Branding::default();
    if let Some(t) = &u.title {
        let title = t.value.trim();
        if title.is_empty() || title.chars().count() > 80 {
            ctx.err(t.referenced, "ui.title", "must be 1 to 80 characters");
        } else {
            branding.title = title.to_string();
        }
    }
    if let Some(c) = &u.accent_color {
        let v = c.value.trim();
        let hex = v.strip_prefix('#').unwrap_or("");
        if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            branding.accent = v.to_string();
        } else {
            ctx.err(
                c.referenced,
                "ui.accent_color",
                format!("`{v}` is not a colour; write it as \"#rrggbb\" (e.g. \"#2f5fe0\")"),
            );
        }
    }
    if let Some(l) = &u.logo {
        let kind = match Path::new(l.value.trim())
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Some("image/svg+xml"),
            Some("png") => Some("image/png"),
            Some("jpg" | "jpeg") => Some("image/jpeg"),
            Some("gif") => Some("image/gif"),
            Some("webp") => Some("image/webp"),
            Some("ico") => Some("image/x-icon"),
            _ => None,
        };
        match kind {
            Some(kind) => {
                if let Some(bytes) = read_asset(ctx, base, l, "ui.logo", MAX_LOGO) {
                    branding.logo = Some((bytes.into(), kind));
                }
            }
            None => ctx.err(
                l.referenced,
                "ui.logo",
                "must be an .svg, .png, .jpg, .gif, .webp or .ico file",
            ),
        }
    }
    if let Some(c) = &u.css {
        if let Some(bytes) = read_asset(ctx, base, c, "ui.css", MAX_CSS) {
            match String::from_utf8(bytes) {
                // Inlined in the page's <style>: it must not be able to end it.
                Ok(css) if css.to_ascii_lowercase().contains("</style") => ctx.err(
                    c.referenced,
                    "ui.css",
                    "must not contain `</style`: it is inlined into the page's styles",
                ),
                Ok(css) => branding.css = css,
                Err(_) => ctx.err(c.referenced, "ui.css", "is not UTF-8 text"),
            }
        }
    }
    branding
}
