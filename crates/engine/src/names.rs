//! Container names: docker's validation rule and its `adjective_surname` generator.

/// Docker's `RestrictedNameChars`, as its error messages print it.
pub const RESTRICTED_NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

const LEFT: &[&str] = &[
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

const RIGHT: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bell",
    "bhabha",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "chatterjee",
    "clarke",
    "curie",
    "darwin",
    "diffie",
    "dijkstra",
    "dirac",
    "easley",
    "einstein",
    "elion",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hermann",
    "hodgkin",
    "hofstadter",
    "hopper",
    "hypatia",
    "jackson",
    "jang",
    "jemison",
    "jennings",
    "johnson",
    "kalam",
    "kepler",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lovelace",
    "lumiere",
    "mahavira",
    "mayer",
    "mcclintock",
    "meitner",
    "mendel",
    "mirzakhani",
    "montalcini",
    "morse",
    "napier",
    "newton",
    "noether",
    "noyce",
    "pascal",
    "pasteur",
    "perlman",
    "poincare",
    "ptolemy",
    "raman",
    "ramanujan",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "stonebraker",
    "swanson",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "volhard",
    "wescoff",
    "wilbur",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// Docker's container name rule: `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (the leading '/' is taken off before this).
pub fn is_valid(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A name like `focused_turing`, chosen by `seed` (random bits from the caller). Like docker, a retry (after a
/// collision) appends a digit, and `boring_wozniak` is never produced ("Steve Wozniak is not boring").
pub fn generate(seed: u64, retry: u32) -> String {
    let mut seed = seed;
    loop {
        let left = LEFT[(seed % LEFT.len() as u64) as usize];
        let right = RIGHT[((seed >> 20) % RIGHT.len() as u64) as usize];
        if left == "boring" && right == "wozniak" {
            seed = seed.rotate_left(7) ^ 0x9e37_79b9_7f4a_7c15;
            continue;
        }
        let mut name = format!("{left}_{right}");
        if retry > 0 {
            name.push(char::from(b'0' + ((seed >> 40) % 10) as u8));
        }
        return name;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in ["ab", "a1", "web_1", "my.app-2", "A_", "0x"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "", "a", "_ab", "-ab", ".ab", "a b", "a/b", "a:b", "é1", "/ab",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn generated_names_are_valid() {
        for seed in 0..2000u64 {
            let seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let n = generate(seed, 0);
            assert!(is_valid(&n), "{n}");
            assert_ne!(n, "boring_wozniak");
            let r = generate(seed, 1);
            assert!(r.starts_with(&n) && r.len() == n.len() + 1, "{r}");
        }
    }
}
