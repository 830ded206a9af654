//! VQAv2 and TextVQA accuracy as lmms-eval computes it (`tasks/_task_utils/vqa_eval_metric.py`,
//! the EvalAI answer processor, and `tasks/{vqav2,textvqa}/utils.py`): normalise, then average
//! over the 10 ground-truth answers `min(1, matches among the other 9 / 3)`.

use serde::Deserialize;

use crate::jsonl::id_string;
use crate::scores::{mean, Scores};

/// Answer types of VQAv2 in the official order.
pub const ANSWER_TYPES: [&str; 3] = ["yes/no", "number", "other"];

const PUNCTUATIONS: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// `(written, canonical)` pairs; only lower-case forms can ever match (input is lower-cased).
const CONTRACTIONS: &[(&str, &str)] = &[
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

fn number_word(word: &str) -> Option<&'static str> {
    Some(match word {
        "none" | "zero" => "0",
        "one" => "1",
        "two" => "2",
        "three" => "3",
        "four" => "4",
        "five" => "5",
        "six" => "6",
        "seven" => "7",
        "eight" => "8",
        "nine" => "9",
        "ten" => "10",
        _ => return None,
    })
}

/// Python's `str.isspace` (what `str.split()` splits on).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

/// `(?<=\d)(\,)+(?=\d)`: a run of commas between two digits.
fn has_comma_between_digits(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ',' && i > 0 && is_re_digit(chars[i - 1]) {
            let mut j = i;
            while j < chars.len() && chars[j] == ',' {
                j += 1;
            }
            if j < chars.len() && is_re_digit(chars[j]) {
                return true;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    false
}

/// Python `re`'s `\d` on str patterns (Unicode decimal digits; other numeric characters
/// outside ASCII are rare enough in answers to be counted too).
fn is_re_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// `process_punctuation`: each punctuation mark is deleted when the *original* text has it next
/// to a space (or has digits around a comma), else replaced by a space; then periods not followed
/// by a digit are removed (`(?!<=\d)(\.)(?!\d)` — the look-behind is mistyped as a look-ahead and
/// never fires), at most 32 of them (`re.UNICODE` passed as `sub`'s count).
pub fn process_punctuation(in_text: &str) -> String {
    let comma_digits = has_comma_between_digits(in_text);
    let mut out = in_text.to_string();
    for p in PUNCTUATIONS {
        let before = format!("{p} ");
        let after = format!(" {p}");
        if in_text.contains(&before) || in_text.contains(&after) || comma_digits {
            out = out.replace(p, "");
        } else {
            out = out.replace(p, " ");
        }
    }
    let chars: Vec<char> = out.chars().collect();
    let mut result = String::with_capacity(out.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let next_is_digit = chars.get(i + 1).is_some_and(|&n| is_re_digit(n));
        if c == '.' && !next_is_digit && removed < 32 {
            removed += 1;
            continue;
        }
        result.push(c);
    }
    result
}

/// `process_digit_article`: lower-case, split on whitespace, number words → digits, articles
/// dropped, contractions restored, joined by single spaces.
pub fn process_digit_article(in_text: &str) -> String {
    let lowered = in_text.to_lowercase();
    let words: Vec<&str> = lowered
        .split(is_python_space)
        .filter(|w| !w.is_empty())
        .map(|w| number_word(w).unwrap_or(w))
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| {
            CONTRACTIONS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| v)
        })
        .collect();
    words.join(" ")
}

/// The full EvalAI answer processor (`EvalAIAnswerProcessor.__call__`).
///
/// ```
/// use magma_eval::metrics::vqa::normalize_answer;
/// assert_eq!(normalize_answer("Two dogs."), "2 dogs");
/// assert_eq!(normalize_answer("It's the man's hat"), "it 's man 's hat");
/// assert_eq!(normalize_answer("dont know"), "don't know");
/// assert_eq!(normalize_answer("t-shirt"), "t shirt");
/// ```
pub fn normalize_answer(item: &str) -> String {
    // word_tokenize
    let item = item
        .to_lowercase()
        .replace([',', '?'], "")
        .replace("'s", " 's");
    let item = py_strip(&item).to_string();
    let item = item.replace(['\n', '\t'], " ");
    let item = py_strip(&item).to_string();
    process_digit_article(&process_punctuation(&item))
}

/// lmms-eval's VQAv2 accuracy of one raw answer against the ground-truth answers.
/// The ground truth (and the already normalised prediction, a second time) goes through
/// punctuation and digit/article processing only when the answers are not all identical. The
/// leave-one-out drops every answer *record* equal to the current one (answer, confidence and
/// id compared, as Python compares the dicts), which with distinct `answer_id`s is the one at
/// that position.
///
/// ```
/// use magma_eval::metrics::vqa::{vqav2_accuracy, VqaAnswer};
/// let gt: Vec<VqaAnswer> = (0..10)
///     .map(|i| VqaAnswer { answer: if i < 3 { "2" } else { "3" }.into(), answer_confidence: None, answer_id: Some(i + 1) })
///     .collect();
/// assert!((vqav2_accuracy("two", &gt) - 0.9).abs() < 1e-12);
/// // all ten identical: the ground truth stays raw, so "t-shirt" (→ "t shirt") never matches
/// let shirts: Vec<VqaAnswer> = (0..10)
///     .map(|i| VqaAnswer { answer: "t-shirt".into(), answer_confidence: None, answer_id: Some(i + 1) })
///     .collect();
/// assert_eq!(vqav2_accuracy("t-shirt", &shirts), 0.0);
/// ```
pub fn vqav2_accuracy(answer: &str, ground_truth: &[VqaAnswer]) -> f64 {
    let mut res = normalize_answer(answer);
    let mut gts: Vec<String> = ground_truth
        .iter()
        .map(|a| py_strip(&a.answer.replace(['\n', '\t'], " ")).to_string())
        .collect();
    let distinct = gts.iter().collect::<std::collections::HashSet<_>>().len();
    if distinct > 1 {
        gts = gts
            .iter()
            .map(|a| process_digit_article(&process_punctuation(a)))
            .collect();
        res = process_digit_article(&process_punctuation(&res));
    }
    let record = |i: usize| {
        (
            &gts[i],
            &ground_truth[i].answer_confidence,
            ground_truth[i].answer_id,
        )
    };
    let accs: Vec<f64> = (0..gts.len())
        .map(|i| {
            let matches = (0..gts.len())
                .filter(|&j| record(j) != record(i) && gts[j] == res)
                .count();
            (matches as f64 / 3.0).min(1.0)
        })
        .collect();
    if accs.is_empty() {
        0.0
    } else {
        mean(&accs)
    }
}

/// lmms-eval's TextVQA accuracy: every ground-truth answer goes through the full processor.
pub fn textvqa_accuracy(answer: &str, ground_truth: &[String]) -> f64 {
    let res = normalize_answer(answer);
    let gts: Vec<String> = ground_truth.iter().map(|a| normalize_answer(a)).collect();
    leave_one_out(&res, &gts)
}

fn leave_one_out(res: &str, gts: &[String]) -> f64 {
    let accs: Vec<f64> = (0..gts.len())
        .map(|i| {
            let matches = gts
                .iter()
                .enumerate()
                .filter(|&(j, g)| j != i && g == res)
                .count();
            (matches as f64 / 3.0).min(1.0)
        })
        .collect();
    if accs.is_empty() {
        0.0
    } else {
        mean(&accs)
    }
}

/// A VQAv2 ground-truth answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VqaAnswer {
    pub answer: String,
    #[serde(default)]
    pub answer_confidence: Option<String>,
    #[serde(default)]
    pub answer_id: Option<u32>,
}

/// One VQAv2 reference question.
#[derive(Debug, Clone, Deserialize)]
pub struct Vqav2Reference {
    #[serde(deserialize_with = "id_string")]
    pub question_id: String,
    #[serde(default)]
    pub question: String,
    #[serde(default)]
    pub answer_type: String,
    pub answers: Vec<VqaAnswer>,
}

/// One TextVQA reference question.
#[derive(Debug, Clone, Deserialize)]
pub struct TextVqaReference {
    #[serde(deserialize_with = "id_string")]
    pub question_id: String,
    #[serde(default)]
    pub question: String,
    pub answers: Vec<String>,
}

/// A VQA prediction (the official results format).
#[derive(Debug, Clone, Deserialize)]
pub struct VqaPrediction {
    #[serde(deserialize_with = "id_string")]
    pub question_id: String,
    pub answer: Option<String>,
}

/// VQAv2: `accuracy` over all questions and per answer type.
pub fn score_vqav2(pairs: &[(Vqav2Reference, Option<VqaPrediction>)]) -> Scores {
    let accs: Vec<(&str, f64)> = pairs
        .iter()
        .map(|(r, p)| {
            let answer = p.as_ref().and_then(|p| p.answer.as_deref()).unwrap_or("");
            (r.answer_type.as_str(), vqav2_accuracy(answer, &r.answers))
        })
        .collect();
    let mut scores = Scores::new();
    scores.insert(
        "accuracy",
        100.0 * mean(&accs.iter().map(|a| a.1).collect::<Vec<_>>()),
    );
    for t in ANSWER_TYPES {
        let v: Vec<f64> = accs.iter().filter(|a| a.0 == t).map(|a| a.1).collect();
        if !v.is_empty() {
            let mut s = Scores::new();
            s.insert("accuracy", 100.0 * mean(&v));
            s.insert("questions", v.len() as f64);
            scores.insert_group(t, s);
        }
    }
    scores.insert("questions", accs.len() as f64);
    scores
}

/// TextVQA: `accuracy` over all questions.
pub fn score_textvqa(pairs: &[(TextVqaReference, Option<VqaPrediction>)]) -> Scores {
    let accs: Vec<f64> = pairs
        .iter()
        .map(|(r, p)| {
            let answer = p.as_ref().and_then(|p| p.answer.as_deref()).unwrap_or("");
            textvqa_accuracy(answer, &r.answers)
        })
        .collect();
    let mut scores = Scores::new();
    scores.insert("accuracy", 100.0 * mean(&accs));
    scores.insert("questions", accs.len() as f64);
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(list: &[(&str, usize)]) -> Vec<VqaAnswer> {
        list.iter()
            .flat_map(|(a, n)| std::iter::repeat_n(a.to_string(), *n))
            .enumerate()
            .map(|(i, answer)| VqaAnswer {
                answer,
                answer_confidence: Some("yes".into()),
                answer_id: Some(i as u32 + 1),
            })
            .collect()
    }

    #[test]
    fn ten_choose_nine_averaging() {
        assert_eq!(vqav2_accuracy("Yes.", &answers(&[("yes", 10)])), 1.0);
        assert!((vqav2_accuracy("yes", &answers(&[("yes", 1), ("no", 9)])) - 0.3).abs() < 1e-12);
        // two matching answers: 8 leave-outs see 2 (2/3), 2 see 1 (1/3) → 0.6
        assert!((vqav2_accuracy("red", &answers(&[("red", 2), ("blue", 8)])) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn punctuation_next_to_a_space_is_deleted_else_spaced() {
        assert_eq!(process_punctuation("black/white"), "black white");
        assert_eq!(process_punctuation("black / white"), "black  white");
        assert_eq!(process_punctuation("3.5 ft."), "3.5 ft");
        // a comma between digits switches every mark to deletion
        assert_eq!(process_punctuation("1,000 (approx)"), "1000 approx");
    }

    #[test]
    fn at_most_32_periods_are_removed() {
        let dots = ".".repeat(40);
        assert_eq!(process_punctuation(&dots), ".".repeat(8));
    }

    #[test]
    fn textvqa_normalises_the_ground_truth_always() {
        let gt = vec!["T-Shirt".to_string(); 10];
        assert_eq!(textvqa_accuracy("t shirt", &gt), 1.0);
    }
}
