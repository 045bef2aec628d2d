//! Text input hygiene shared by every use case: bounded lengths, no NUL or other control characters
//! (line breaks and tabs are allowed in long text only), and file names that cannot name a path.

use crate::error::DomainError;

/// Checks a one-line field: trimmed, `min..=max` characters, no control characters at all.
pub fn line(field: &str, value: &str, min: usize, max: usize) -> Result<String, DomainError> {
    let v = value.trim();
    check_len(field, v, min, max)?;
    if v.chars().any(char::is_control) {
        return Err(DomainError::invalid(field, "control characters are not allowed"));
    }
    Ok(v.to_owned())
}

/// Checks a free-text field: trimmed, `min..=max` characters; line breaks and tabs allowed, other
/// control characters not.
pub fn long(field: &str, value: &str, min: usize, max: usize) -> Result<String, DomainError> {
    let v = value.trim();
    check_len(field, v, min, max)?;
    if v.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(DomainError::invalid(field, "control characters are not allowed"));
    }
    Ok(v.to_owned())
}

/// Checks a file name: 1–100 characters, no path separators, no `..`, no control characters.
pub fn file_name(field: &str, value: &str) -> Result<String, DomainError> {
    let v = line(field, value, 1, 100)?;
    if v.contains(['/', '\\']) || v.starts_with('.') || v.contains("..") {
        return Err(DomainError::invalid(field, "a file name, not a path"));
    }
    Ok(v)
}

fn check_len(field: &str, v: &str, min: usize, max: usize) -> Result<(), DomainError> {
    let n = v.chars().count();
    if n < min || n > max {
        let what = if min == 0 { format!("at most {max} characters") } else { format!("{min}–{max} characters") };
        return Err(DomainError::invalid(field, what));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_refuse_control_characters_and_long_text_allows_line_breaks() {
        assert_eq!(line("name", "  李四 ", 1, 10).as_deref(), Ok("李四"));
        assert!(line("name", "a\u{0}b", 1, 10).is_err());
        assert!(line("name", "a\nb", 1, 10).is_err());
        assert!(long("reason", "第一行\n第二行", 1, 100).is_ok());
        assert!(long("reason", "bell\u{7}", 1, 100).is_err());
        assert!(line("name", &"长".repeat(11), 1, 10).is_err());
        assert!(line("name", "   ", 1, 10).is_err());
    }

    #[test]
    fn file_names_cannot_name_a_path() {
        for bad in ["../../etc/passwd", "a/b.jpg", "a\\b.jpg", ".htaccess", "", "x\u{0}.jpg"] {
            assert!(file_name("name", bad).is_err(), "{bad:?}");
        }
        assert_eq!(file_name("name", "现场照片 1.jpg").as_deref(), Ok("现场照片 1.jpg"));
    }
}
