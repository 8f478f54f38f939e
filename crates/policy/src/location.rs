//! Line and column numbers in policy text.

/// A 1-based line and column; the column counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    pub const START: Position = Position { line: 1, column: 1 };

    /// Converts a byte offset into `text` to a position. An offset past the end maps to the
    /// end, and an offset inside a character maps to that character.
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

/// Returns the byte offset at which each statement (policy or template) of a Cedar policy text
/// starts: its first annotation or its effect keyword. The parser numbers statements in this
/// order (`policy0`, `policy1`, …), so the n-th offset is the start of policy `policyN`.
///
/// It follows the Cedar lexer only as far as that needs: whitespace and `//` comments between
/// statements are skipped, string literals (with backslash escapes) are skipped whole, and a
/// `;` outside a string or comment ends a statement. Cedar has no other comment syntax.
pub(crate) fn statement_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_statement = false;
    let mut chars = text.char_indices().peekable();
    while let Some((offset, character)) = chars.next() {
        if character == '/' && chars.peek().is_some_and(|&(_, next)| next == '/') {
            skip_line(&mut chars);
            continue;
        }
        if character.is_whitespace() {
            continue;
        }
        if !in_statement {
            starts.push(offset);
            in_statement = true;
        }
        match character {
            '"' => skip_string(&mut chars),
            ';' => in_statement = false,
            _ => {}
        }
    }
    starts
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) {
    for (_, character) in chars.by_ref() {
        if character == '\n' || character == '\r' {
            return;
        }
    }
}

/// Skips the rest of a string literal whose opening quote was consumed.
fn skip_string(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) {
    while let Some((_, character)) = chars.next() {
        match character {
            '\\' => {
                chars.next();
            }
            '"' => return,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_of_offsets() {
        let text = "ab\ncdé\nf";
        assert_eq!(Position::of_offset(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of_offset(text, 3), Position { line: 2, column: 1 });
        // 'f' follows the two-byte 'é'.
        assert_eq!(Position::of_offset(text, 8), Position { line: 3, column: 1 });
        assert_eq!(Position::of_offset(text, 7), Position { line: 2, column: 4 });
        assert_eq!(Position::of_offset(text, 100), Position { line: 3, column: 2 });
    }

    #[test]
    fn statement_starts_skip_comments_and_strings() {
        let text = "// permit (principal, action, resource);\n\
                    @id(\"a;b\") permit (principal, action, resource)\n\
                    when { principal.name == \"x\\\";// y\" }; // trailing;\n\
                    \n  forbid (principal, action, resource);";
        let starts = statement_starts(text);
        assert_eq!(starts.len(), 2);
        assert!(text[starts[0]..].starts_with("@id(\"a;b\")"));
        assert!(text[starts[1]..].starts_with("forbid"));
    }

    #[test]
    fn statement_starts_of_empty_text() {
        assert!(statement_starts("  // only a comment\n").is_empty());
    }
}
