//! A tiny cursor for the hand-written parsers (the crate avoids a regex dependency).

/// Cursor over a string slice; every method either consumes input and returns `Some`/`true`,
/// or leaves the position unchanged.
#[derive(Debug, Clone)]
pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    pub(crate) fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub(crate) fn is_done(&self) -> bool {
        self.pos >= self.text.len()
    }

    pub(crate) fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Consumes `literal` if the input continues with it.
    pub(crate) fn eat(&mut self, literal: &str) -> bool {
        if self.rest().starts_with(literal) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    /// Skips whitespace, then consumes `literal`; restores the position if it is not there.
    pub(crate) fn eat_after_ws(&mut self, literal: &str) -> bool {
        let start = self.pos;
        self.skip_ws();
        if self.eat(literal) {
            true
        } else {
            self.pos = start;
            false
        }
    }

    fn digits(&self, from: usize) -> usize {
        self.text[from..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count()
    }

    /// `\d+` as an unsigned integer.
    pub(crate) fn uint(&mut self) -> Option<u32> {
        let n = self.digits(self.pos);
        let value = self.text[self.pos..self.pos + n].parse().ok()?;
        self.pos += n;
        Some(value)
    }

    /// `-?\d+` as a signed integer.
    pub(crate) fn int(&mut self) -> Option<i32> {
        let sign = usize::from(self.rest().starts_with('-'));
        let n = self.digits(self.pos + sign);
        if n == 0 {
            return None;
        }
        let value = self.text[self.pos..self.pos + sign + n].parse().ok()?;
        self.pos += sign + n;
        Some(value)
    }

    /// `-?\d+(\.\d*)?` as a float (the reference's number pattern `-?\d+\.?\d*`).
    pub(crate) fn number(&mut self) -> Option<f64> {
        let sign = usize::from(self.rest().starts_with('-'));
        let int_digits = self.digits(self.pos + sign);
        if int_digits == 0 {
            return None;
        }
        let mut end = self.pos + sign + int_digits;
        if self.text[end..].starts_with('.') {
            end += 1 + self.digits(end + 1);
        }
        let value = self.text[self.pos..end].parse().ok()?;
        self.pos = end;
        Some(value)
    }

    /// Every match of the reference's number pattern `-?\d+\.?\d*`, left to right.
    pub(crate) fn all_numbers(text: &str) -> Vec<f64> {
        let mut scanner = Scanner::new(text);
        let mut out = Vec::new();
        while !scanner.is_done() {
            match scanner.number() {
                Some(v) => out.push(v),
                None => scanner.advance_char(),
            }
        }
        out
    }

    pub(crate) fn advance_char(&mut self) {
        if let Some(c) = self.rest().chars().next() {
            self.pos += c.len_utf8();
        }
    }

    /// Consumes and returns everything up to (not including) the first `delimiter`.
    pub(crate) fn take_until(&mut self, delimiter: &str) -> Option<&'a str> {
        let offset = self.rest().find(delimiter)?;
        let taken = &self.rest()[..offset];
        self.pos += offset;
        Some(taken)
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn set_position(&mut self, pos: usize) {
        self.pos = pos;
    }
}

#[cfg(test)]
mod tests {
    use super::Scanner;

    #[test]
    fn number_pattern_matches_the_reference_regex() {
        // `-?\d+\.?\d*`: "2." is a number, ".5" yields 5, "1-2" yields 1 and -2
        assert_eq!(
            Scanner::all_numbers("Mark: 2. (.5, 1-2) x-3.25"),
            vec![2.0, 5.0, 1.0, -2.0, -3.25]
        );
    }
}
