//! Names people type: normalised to Unicode NFC and trimmed, so "é" typed as one code point or
//! as "e" plus a combining accent is the same name, and checked for length and control
//! characters.

use unicode_normalization::UnicodeNormalization;

use crate::ApiError;

/// Invisible characters that change how text is shown or compared (zero-width spaces and
/// joiners, direction overrides and isolates, the byte-order mark, the soft hyphen): two names
/// that differ only in these look identical, and a direction override reverses what follows.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}')
}

/// Returns `raw` trimmed and in NFC, or a 400 naming `field`.
pub fn name(field: &'static str, raw: &str, max_chars: usize) -> Result<String, ApiError> {
    let normalised: String = raw.trim().nfc().collect();
    let length = normalised.chars().count();
    if length == 0 {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} must not be empty"),
        ));
    }
    if length > max_chars {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} is {length} characters long; the limit is {max_chars}"),
        ));
    }
    if normalised.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} must not contain control characters"),
        ));
    }
    if normalised.chars().any(is_invisible_format) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} must not contain invisible formatting characters (zero-width or direction marks)"),
        ));
    }
    Ok(normalised)
}

/// A user name: like [`name`], and without spaces inside, since people type it at login.
pub fn user_name(raw: &str) -> Result<String, ApiError> {
    let normalised = name("username", raw, 64)?;
    if normalised.chars().any(char::is_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_name",
            "username must not contain spaces",
        ));
    }
    Ok(normalised)
}

/// Checks a new password: at least 12 characters, at most 1024 bytes.
pub fn password(raw: &str) -> Result<(), ApiError> {
    if raw.chars().count() < 12 {
        return Err(ApiError::bad_request(
            "weak_password",
            "password must be at least 12 characters long",
        ));
    }
    if raw.len() > 1024 {
        return Err(ApiError::bad_request(
            "weak_password",
            "password must be at most 1024 bytes",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_and_decomposed_forms_are_one_name() {
        let composed = name("name", "Zo\u{eb}", 10).unwrap();
        let decomposed = name("name", " Zoe\u{308} ", 10).unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(composed.chars().count(), 3);
    }

    #[test]
    fn cyrillic_and_cjk_round_trip() {
        assert_eq!(name("name", "Пётр", 10).unwrap(), "Пётр");
        assert_eq!(name("name", "山田太郎", 10).unwrap(), "山田太郎");
    }

    #[test]
    fn rejects_empty_long_and_control() {
        assert!(name("name", "   ", 10).is_err());
        assert!(name("name", "abcdefghijk", 10).is_err());
        assert!(name("name", "a\u{7}b", 10).is_err());
        assert!(user_name("two words").is_err());
        assert!(user_name("al\u{200B}ice").is_err());
        assert!(name("name", "MP\u{202E}gnp.exe", 20).is_err());
        assert!(password("short").is_err());
        assert!(password("long enough pass").is_ok());
    }
}
