//! Client text that a browser will later show: free text (names, reasons) and `https` URLs.
//! Output encoding is the front end's job, but what we store must not be able to spoof or break
//! out of the place it is shown in, whatever template or e-mail renders it later.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use url::Url;

/// Zero-width non-joiner and joiner. They are format characters, but Persian, Kurdish and Indic
/// names cannot be spelt correctly without them, and unlike bidi controls they cannot reorder text.
const JOINERS: [char; 2] = ['\u{200C}', '\u{200D}'];

/// The Unicode `Bidi_Control` characters (PropList.txt). All are `Cf`, so the category check
/// already refuses them; they are listed by hand so that a table that ever classifies one
/// differently cannot let a "Trojan Source" reordering through.
const BIDI_CONTROLS: [char; 12] = [
    '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}',
];

/// Characters that would end an HTML attribute or tag, a JavaScript string or a CSS `url(…)`
/// if a template ever forgot to escape a URL. A well-formed URL never needs them raw.
const URL_BREAKOUT: [char; 6] = ['"', '\'', '<', '>', '`', '\\'];

/// Free text such as a name or a reason: trimmed, 1 to `max_chars` characters (not bytes, so
/// non-Latin scripts get the same room), with no control characters and no invisible formatting
/// or bidi controls, which could make a name display as something else.
pub fn free_text(raw: &str, max_chars: usize) -> Result<String, String> {
    let text = raw.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > max_chars {
        return Err(format!("must be 1 to {max_chars} characters"));
    }
    if text.chars().any(is_control) {
        return Err("must not contain control characters".into());
    }
    if text.chars().any(is_invisible_format) {
        return Err("must not contain invisible formatting or bidirectional control characters".into());
    }
    Ok(text.to_owned())
}

/// General category `Cc`: C0, DEL and C1, including `\n` and `\t`.
fn is_control(c: char) -> bool {
    c.general_category() == GeneralCategory::Control
}

/// General category `Cf` (bidi controls, BOM, word joiner, soft hyphen, …) except the joiners.
fn is_invisible_format(c: char) -> bool {
    BIDI_CONTROLS.contains(&c) || (c.general_category() == GeneralCategory::Format && !JOINERS.contains(&c))
}

/// An absolute `https` URL with a host and no credentials, at most `max_len` bytes.
///
/// The raw text is checked before parsing, because the parser would quietly percent-encode
/// quotes and drop tabs and newlines, hiding what the client tried. The URL is returned as the
/// parser serialises it, not as given: that form is pure ASCII (an internationalised host
/// becomes punycode, anything else non-ASCII is percent-encoded, so no bidi or invisible
/// character survives into an attribute), and it is exactly what a browser, which follows the
/// same WHATWG rules, will fetch. A URL that is already canonical comes back unchanged.
pub fn https_url(raw: &str, max_len: usize) -> Result<String, String> {
    let refused =
        || format!("must be an https:// URL of at most {max_len} characters, without credentials, quotes, angle brackets or spaces");
    let trimmed = raw.trim();
    if trimmed.len() > max_len || trimmed.chars().any(is_unsafe_in_url) {
        return Err(refused());
    }
    let url = Url::parse(trimmed).map_err(|_| refused())?;
    if is_plain_https(&url) && url.as_str().len() <= max_len {
        Ok(url.as_str().to_owned())
    } else {
        Err(refused())
    }
}

/// Characters refused anywhere in a raw URL: whitespace, controls and [`URL_BREAKOUT`].
fn is_unsafe_in_url(c: char) -> bool {
    c.is_whitespace() || c.is_control() || URL_BREAKOUT.contains(&c)
}

/// `https`, a host, and no userinfo, which would let `https://cdn.example@evil.example/`
/// pass for a URL on `cdn.example`.
fn is_plain_https(url: &Url) -> bool {
    url.scheme() == "https" && url.host().is_some() && url.username().is_empty() && url.password().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_MESSAGE: &str = "must not contain invisible formatting or bidirectional control characters";

    fn logo(raw: &str) -> Result<String, String> {
        https_url(raw, 2048)
    }

    #[test]
    fn free_text_is_trimmed_and_otherwise_kept_as_written() {
        assert_eq!(free_text("  Zoë Ørsted \n", 100).as_deref(), Ok("Zoë Ørsted"));
    }

    #[test]
    fn blank_text_is_refused() {
        for blank in ["", "   ", "\n\t"] {
            assert_eq!(free_text(blank, 100), Err("must be 1 to 100 characters".into()), "{blank:?}");
        }
    }

    #[test]
    fn the_length_bound_counts_characters_not_bytes() {
        let five = "é".repeat(5);
        assert_eq!(five.len(), 10);
        assert_eq!(free_text(&five, 5), Ok(five));
        assert_eq!(free_text(&"é".repeat(6), 5), Err("must be 1 to 5 characters".into()));
    }

    #[test]
    fn a_right_to_left_override_is_refused() {
        assert_eq!(free_text("Invoice\u{202E}fdp.exe", 100), Err(FORMAT_MESSAGE.into()));
    }

    #[test]
    fn a_right_to_left_mark_is_refused() {
        assert_eq!(free_text("Acme\u{200F} Ltd", 100), Err(FORMAT_MESSAGE.into()));
    }

    #[test]
    fn a_byte_order_mark_is_refused_even_at_the_edges() {
        // U+FEFF is not whitespace, so trimming does not remove it.
        for text in ["Ac\u{FEFF}me", "\u{FEFF}Acme"] {
            assert_eq!(free_text(text, 100), Err(FORMAT_MESSAGE.into()), "{text:?}");
        }
    }

    #[test]
    fn every_bidi_control_and_other_invisible_format_character_is_refused() {
        let others = ['\u{FEFF}', '\u{2060}', '\u{00AD}', '\u{200B}', '\u{2064}'];
        for c in BIDI_CONTROLS.into_iter().chain(others) {
            assert_eq!(free_text(&format!("a{c}b"), 100), Err(FORMAT_MESSAGE.into()), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn newlines_tabs_and_other_control_characters_are_refused() {
        for text in ["Acme\nLtd", "Acme\tLtd", "Ac\rme", "Ac\u{7}me", "Ac\u{7F}me", "Ac\u{85}me"] {
            assert_eq!(free_text(text, 100), Err("must not contain control characters".into()), "{text:?}");
        }
    }

    #[test]
    fn a_persian_name_with_a_zero_width_non_joiner_is_kept() {
        let name = "می\u{200C}خواهم";
        assert_eq!(free_text(name, 100).as_deref(), Ok(name));
    }

    #[test]
    fn a_devanagari_name_with_a_zero_width_joiner_is_kept() {
        let name = "क\u{094D}\u{200D}ष";
        assert_eq!(free_text(name, 100).as_deref(), Ok(name));
    }

    #[test]
    fn an_svg_injection_in_a_logo_is_refused() {
        assert!(logo(r#"https://x"><svg/onload=alert(1)>@evil.example/a.png"#).is_err());
    }

    #[test]
    fn credentials_in_a_url_are_refused() {
        assert!(logo("https://user:pw@cdn.example/a.png").is_err());
        assert!(logo("https://cdn.example@evil.example/a.png").is_err());
    }

    #[test]
    fn plain_http_and_other_schemes_are_refused() {
        for bad in ["http://cdn.example/a.png", "javascript:alert(1)", "data:image/svg+xml,<svg/>", "//cdn.example/a.png"] {
            assert!(logo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_url_without_a_host_is_refused() {
        for bad in ["", "https:", "https://", "https://:443/a.png"] {
            assert!(logo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quotes_backslashes_and_whitespace_are_refused_before_parsing() {
        let bad = [
            "https://cdn.example/a'b.png",
            "https://cdn.example/a`b.png",
            "https://cdn.example\\a.png",
            "https://cdn.example/a b.png",
            "https://cdn.example/a\tb.png",
            "https://cdn.example/a\u{A0}b.png",
            "https://cdn.example/a\u{85}b.png",
        ];
        for url in bad {
            assert!(logo(url).is_err(), "{url:?}");
        }
    }

    #[test]
    fn a_cdn_url_is_accepted_unchanged() {
        assert_eq!(logo(" https://cdn.acme.example/logo.png?v=2 ").as_deref(), Ok("https://cdn.acme.example/logo.png?v=2"));
    }

    #[test]
    fn non_ascii_in_a_url_is_stored_encoded() {
        assert_eq!(logo("https://bücher.example/logo.png").as_deref(), Ok("https://xn--bcher-kva.example/logo.png"));
        let spoof = logo("https://cdn.example/\u{202E}gnp.exe").unwrap();
        assert!(spoof.is_ascii(), "{spoof}");
        assert!(spoof.contains("%E2%80%AE"), "{spoof}");
    }

    #[test]
    fn the_url_length_bound_applies_to_what_is_stored() {
        let exact = "https://cdn.example/a.png";
        assert_eq!(https_url(exact, exact.len()).as_deref(), Ok(exact));
        assert!(https_url(exact, exact.len() - 1).is_err());
        // 28 bytes as sent, 44 once each `é` is percent-encoded.
        assert!(https_url("https://cdn.example/éééé", 30).is_err());
    }
}
