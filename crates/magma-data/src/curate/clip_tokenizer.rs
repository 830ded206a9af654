//! The tokenizer of OpenAI's `clip` package (`simple_tokenizer.py`): text cleanup, a regex
//! pre-split, byte-level BPE over the real CLIP merges, `<|startoftext|>` … `<|endoftext|>`.
//!
//! The merges come from a Hugging Face CLIP folder's `merges.txt` (the same 48 894 merges as
//! the package's `bpe_simple_vocab_16e6.txt.gz`); the vocabulary is rebuilt from them in the
//! package's order (256 byte symbols, the same with `</w>`, one token per merge, the two
//! specials), so ids equal `clip.tokenize`'s.
//!
//! Cleanup follows the package: `ftfy.fix_text`, HTML unescaping twice, whitespace runs to one
//! space, lower case. Of ftfy's fixes, the ones that change ordinary captions are reproduced
//! (curly quotes, Latin ligatures, full-width forms); mojibake repair and NFC normalisation are
//! not (captions in Magma's sources are clean UTF-8).
//!
//! ```no_run
//! use magma_data::curate::clip_tokenizer::ClipTokenizer;
//! let tok = ClipTokenizer::from_folder("clip-vit-large-patch14-336".as_ref())?;
//! let ids = tok.tokenize("a person chopping onions", true)?;
//! assert_eq!(ids[0], 49406);
//! # Ok::<(), magma_data::DataError>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use regex::Regex;

use crate::error::{DataError, Result};

/// `clip.tokenize`'s context length.
pub const CONTEXT_LENGTH: usize = 77;

/// CLIP's byte-level BPE tokenizer.
#[derive(Debug)]
pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_encoder: [char; 256],
    pattern: Regex,
    start: u32,
    end: u32,
}

/// GPT-2's reversible byte → printable character map (`bytes_to_unicode`), in its order.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    bytes
        .into_iter()
        .zip(chars)
        .map(|(b, c)| (b as u8, char::from_u32(c).expect("valid code point")))
        .collect()
}

impl ClipTokenizer {
    /// Loads `merges.txt` from a Hugging Face CLIP folder.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("merges.txt");
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        Self::from_merges(&text).map_err(|m| DataError::invalid(path.display().to_string(), m))
    }

    /// Builds the tokenizer from the text of a `merges.txt` (a `#version` line, then one
    /// `first second` pair per line).
    pub fn from_merges(text: &str) -> std::result::Result<Self, String> {
        let merges: Vec<(String, String)> = text
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                let mut parts = l.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
                    _ => Err(format!("merge {}: expected two symbols, got {l:?}", i + 1)),
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        if merges.is_empty() {
            return Err("no merges".into());
        }
        let table = bytes_to_unicode();
        let mut byte_encoder = ['\0'; 256];
        for &(b, c) in &table {
            byte_encoder[b as usize] = c;
        }
        let mut vocab: Vec<String> = table.iter().map(|&(_, c)| c.to_string()).collect();
        vocab.extend(table.iter().map(|&(_, c)| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push("<|startoftext|>".into());
        vocab.push("<|endoftext|>".into());
        let encoder: HashMap<String, u32> = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, i))
            .collect();
        let pattern = Regex::new(
            r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )
        .expect("valid pattern");
        Ok(Self {
            start: encoder["<|startoftext|>"],
            end: encoder["<|endoftext|>"],
            encoder,
            ranks,
            byte_encoder,
            pattern,
        })
    }

    /// Vocabulary size (49 408 for CLIP).
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// Token ids of `text` without the start/end tokens (`SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = clean(text);
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&text) {
            let symbol: String = m
                .as_str()
                .bytes()
                .map(|b| self.byte_encoder[b as usize])
                .collect();
            for piece in self.bpe(&symbol) {
                // Every BPE output is in the vocabulary by construction of the merges.
                ids.push(self.encoder[&piece]);
            }
        }
        ids
    }

    /// `clip.tokenize(text, truncate=...)` without the zero padding: start token, the text,
    /// end token; longer than 77 is an error unless `truncate`, which keeps 77 with the end
    /// token last.
    pub fn tokenize(&self, text: &str, truncate: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(CONTEXT_LENGTH);
        ids.push(self.start);
        ids.extend(self.encode(text));
        ids.push(self.end);
        if ids.len() > CONTEXT_LENGTH {
            if !truncate {
                return Err(DataError::invalid(
                    "text",
                    format!(
                        "{} tokens exceed the context length {CONTEXT_LENGTH}: {text:.40}…",
                        ids.len()
                    ),
                ));
            }
            ids.truncate(CONTEXT_LENGTH);
            ids[CONTEXT_LENGTH - 1] = self.end;
        }
        Ok(ids)
    }

    /// Merges the lowest-ranked adjacent pair until none is in the merge table.
    fn bpe(&self, token: &str) -> Vec<String> {
        let chars: Vec<char> = token.chars().collect();
        let mut word: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|p| {
                    self.ranks
                        .get(&(p[0].clone(), p[1].clone()))
                        .map(|&r| (r, p))
                })
                .min_by_key(|&(r, _)| r)
                .map(|(_, p)| (p[0].clone(), p[1].clone()));
            let Some((first, second)) = best else { break };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut word[i]));
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }
}

/// `whitespace_clean(basic_clean(text)).lower()` of the `clip` package.
pub fn clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    let spaced: Vec<&str> = unescaped.split_whitespace().collect();
    spaced.join(" ").to_lowercase()
}

/// The parts of `ftfy.fix_text` that touch clean text: curly quotes to straight ones, Latin
/// ligatures spelled out, full-width ASCII forms to ASCII.
fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' => out.push('\''),
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' => out.push('"'),
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            '\u{3000}' => out.push(' '),
            '\u{FF01}'..='\u{FF5E}' => {
                out.push(char::from_u32(c as u32 - 0xFF01 + 0x21).expect("ASCII range"))
            }
            c => out.push(c),
        }
    }
    out
}

/// Python's `html.unescape` for numeric references and the named entities captions use.
fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    const NAMED: &[(&str, &str)] = &[
        ("amp", "&"),
        ("lt", "<"),
        ("gt", ">"),
        ("quot", "\""),
        ("apos", "'"),
        ("nbsp", "\u{a0}"),
        ("ndash", "\u{2013}"),
        ("mdash", "\u{2014}"),
        ("hellip", "\u{2026}"),
        ("lsquo", "\u{2018}"),
        ("rsquo", "\u{2019}"),
        ("ldquo", "\u{201C}"),
        ("rdquo", "\u{201D}"),
        ("copy", "\u{a9}"),
        ("reg", "\u{ae}"),
        ("deg", "\u{b0}"),
        ("eacute", "\u{e9}"),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let end = rest[1..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '#')
            .map_or(rest.len(), |e| e + 1);
        let name = &rest[1..end];
        let has_semicolon = rest[end..].starts_with(';');
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let value = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse().ok(),
            };
            value.and_then(char::from_u32).map(String::from)
        } else {
            NAMED
                .iter()
                .find(|(n, _)| *n == name && has_semicolon)
                .map(|(_, v)| v.to_string())
        };
        match decoded {
            Some(s) if !name.is_empty() => {
                out.push_str(&s);
                rest = &rest[end + usize::from(has_semicolon)..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_unescapes_lowercases_and_squeezes_spaces() {
        assert_eq!(
            clean("  Tom &amp;amp; Jerry&#39;s\n\t KITCHEN &lt;3 “hi” ﬁne "),
            "tom & jerry's kitchen <3 \"hi\" fine"
        );
        assert_eq!(html_unescape("a &bogus; b & c &#x41;"), "a &bogus; b & c A");
    }

    #[test]
    fn bpe_merges_the_lowest_rank_first() {
        // A toy merge table: "a b" then "ab c".
        let tok = ClipTokenizer::from_merges("#version: 0.2\na b\nab c</w>\n").unwrap();
        assert_eq!(tok.bpe("abc"), vec!["abc</w>"]);
        assert_eq!(tok.bpe("ba"), vec!["b", "a</w>"]);
        assert!(ClipTokenizer::from_merges("#version: 0.2\nonly\n").is_err());
    }
}
