//! Accounts, pure: roles, what a valid login, name or pseudonym is, and the codes people type
//! (class join codes, students' recovery codes, teacher invites). No I/O; the randomness comes in
//! as an argument so that tests can fix it.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Student,
    Teacher,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Teacher => "teacher",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "student" => Some(Role::Student),
            "teacher" => Some(Role::Teacher),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Teachers and admins run classrooms (an admin is a teacher who may also bootstrap others).
    pub fn is_teacher(self) -> bool {
        matches!(self, Role::Teacher | Role::Admin)
    }
}

/// Letters people do not confuse when reading them off a board or typing them: no I/L/1, O/0.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
pub const JOIN_CODE_LEN: usize = 6;
/// 10 characters of 31: about 50 bits, and the recovery form is throttled.
pub const RECOVERY_CODE_LEN: usize = 10;
/// 16 characters: about 80 bits, for a code that grants a teacher account.
pub const INVITE_CODE_LEN: usize = 16;

pub const PSEUDONYM_MIN_CHARS: usize = 2;
pub const PSEUDONYM_MAX_CHARS: usize = 32;
pub const LOGIN_MIN_CHARS: usize = 3;
pub const LOGIN_MAX_CHARS: usize = 32;
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Argon2 accepts any length, but hashing a megabyte on every attempt is a cheap way to load us.
pub const PASSWORD_MAX_BYTES: usize = 256;
pub const DISPLAY_NAME_MAX_CHARS: usize = 60;
pub const CLASSROOM_NAME_MAX_CHARS: usize = 80;
pub const SCHOOL_MAX_CHARS: usize = 120;

fn random_code(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect()
}

pub fn generate_join_code(rng: &mut impl Rng) -> String {
    random_code(rng, JOIN_CODE_LEN)
}

/// A recovery code as shown to people: `ABCDE-FGH23` (the dash is optional when typed back).
pub fn generate_recovery_code(rng: &mut impl Rng) -> String {
    group(&random_code(rng, RECOVERY_CODE_LEN), 5)
}

/// An invite code as shown: `ABCD-EFGH-JKMN-PQRS`.
pub fn generate_invite_code(rng: &mut impl Rng) -> String {
    group(&random_code(rng, INVITE_CODE_LEN), 4)
}

fn group(code: &str, size: usize) -> String {
    code.as_bytes()
        .chunks(size)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// A typed code in canonical form: upper case, without spaces or dashes. Whether it is a code
/// that exists is the database's question; this only makes `abcde fgh23` match `ABCDE-FGH23`.
pub fn normalize_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// SHA-256 (hex) of a typed teacher invite in canonical form. Invites are long random codes used
/// once, so a fast hash is enough, and the database can find an invite by it.
pub fn invite_hash(typed: &str) -> String {
    Sha256::digest(normalize_code(typed).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A join code as typed, canonical, or `None` if it cannot be one (wrong length or letters):
/// such a code is answered like an unknown one without asking the database.
pub fn parse_join_code(typed: &str) -> Option<String> {
    let code = normalize_code(typed);
    (code.len() == JOIN_CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// Characters that change how text looks without being visible themselves (zero-width spaces and
/// joiners, bidirectional overrides, soft hyphen, BOM): refused so that two pseudonyms cannot look
/// the same, or reverse the text around them.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFF}' | '\u{E0000}'..='\u{E007F}')
}

/// NFC, every kind of space made a plain space, runs of spaces collapsed, ends trimmed.
fn tidy(raw: &str) -> String {
    let nfc: String = raw.nfc().collect();
    nfc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Why a name was refused, in words for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

fn check_text(
    raw: &str,
    what: &str,
    min: usize,
    max: usize,
    allow_empty: bool,
) -> Result<String, Invalid> {
    // Tabs and newlines are refused rather than turned into spaces: a name is one line.
    if raw.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(Invalid(format!(
            "{what} contient un caractère invisible ou de contrôle."
        )));
    }
    let text = tidy(raw);
    let n = text.chars().count();
    if text.is_empty() && allow_empty {
        return Ok(text);
    }
    if n < min || n > max {
        return Err(Invalid(format!(
            "{what} doit faire entre {min} et {max} caractères."
        )));
    }
    Ok(text)
}

/// A pseudonym as it will be stored and shown: any printable characters (letters of any script,
/// digits, punctuation, even `<` and `>`: it is always rendered as text, never as HTML), one line,
/// 2 to 32 characters once spaces are tidied.
pub fn validate_pseudonym(raw: &str) -> Result<String, Invalid> {
    check_text(
        raw,
        "Le pseudonyme",
        PSEUDONYM_MIN_CHARS,
        PSEUDONYM_MAX_CHARS,
        false,
    )
}

/// The key that makes pseudonyms unique in a class: case, accents and spacing do not count, so
/// "Léa  M" and "lea m" are the same pseudonym. Ligatures are spelled out (œ → oe, ß → ss).
pub fn pseudonym_key(pseudonym: &str) -> String {
    let folded: String = tidy(pseudonym)
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .replace('œ', "oe")
        .replace('æ', "ae")
        .replace('ß', "ss")
        .nfc()
        .collect()
}

/// What makes pseudonyms unique in a class: the key above, then its confusable skeleton (Unicode
/// UTS #39), lower-cased. Pseudonyms that only look alike — a Cyrillic `А` for a Latin `A`, `0`
/// for `o`, `rn` for `m`, `l` for `I` — are one pseudonym, so nobody can pose as a classmate on
/// the dashboard or the leaderboard. Stored beside the key (`enrollments.pseudonym_skeleton`).
pub fn pseudonym_skeleton(pseudonym: &str) -> String {
    let key = pseudonym_key(pseudonym);
    let skeleton: String = unicode_security::skeleton(&key).collect();
    skeleton.chars().flat_map(char::to_lowercase).collect()
}

pub fn validate_display_name(raw: &str) -> Result<String, Invalid> {
    check_text(raw, "Le nom", 1, DISPLAY_NAME_MAX_CHARS, false)
}

pub fn validate_classroom_name(raw: &str) -> Result<String, Invalid> {
    check_text(
        raw,
        "Le nom de la classe",
        1,
        CLASSROOM_NAME_MAX_CHARS,
        false,
    )
}

pub fn validate_school(raw: &str) -> Result<String, Invalid> {
    check_text(raw, "Le nom de l'établissement", 1, SCHOOL_MAX_CHARS, true)
}

/// Logins are compared lower-cased and trimmed, so `Mme.Dupont ` signs in as `mme.dupont`.
pub fn normalize_login(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// A new login: 3–32 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_login(raw: &str) -> Result<String, Invalid> {
    let login = normalize_login(raw);
    let n = login.chars().count();
    let ok_chars = login
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let ok_start = login
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !(LOGIN_MIN_CHARS..=LOGIN_MAX_CHARS).contains(&n) || !ok_chars || !ok_start {
        return Err(Invalid(format!(
            "L'identifiant doit faire entre {LOGIN_MIN_CHARS} et {LOGIN_MAX_CHARS} caractères \
             parmi a-z, 0-9, « . », « _ » et « - », et commencer par une lettre ou un chiffre."
        )));
    }
    Ok(login)
}

/// A new password: at least 8 characters, at most 256 bytes. No composition rules: length is
/// what makes a password strong.
pub fn validate_password(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < PASSWORD_MIN_CHARS || password.len() > PASSWORD_MAX_BYTES {
        return Err(Invalid(format!(
            "Le mot de passe doit faire au moins {PASSWORD_MIN_CHARS} caractères \
             (et au plus {PASSWORD_MAX_BYTES} octets)."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn codes_use_only_the_unambiguous_alphabet() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let join = generate_join_code(&mut rng);
            assert_eq!(join.len(), JOIN_CODE_LEN);
            assert!(join.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{join}");
            assert_eq!(parse_join_code(&join.to_lowercase()), Some(join));
            let recovery = generate_recovery_code(&mut rng);
            assert_eq!(recovery.len(), RECOVERY_CODE_LEN + 1);
            assert_eq!(recovery.as_bytes()[5], b'-');
            assert_eq!(normalize_code(&recovery).len(), RECOVERY_CODE_LEN);
            let invite = generate_invite_code(&mut rng);
            assert_eq!(normalize_code(&invite).len(), INVITE_CODE_LEN);
            assert_eq!(
                invite_hash(&invite),
                invite_hash(&invite.to_lowercase().replace('-', " "))
            );
        }
        for c in ["I", "L", "O", "0", "1"] {
            assert!(!CODE_ALPHABET.contains(&c.as_bytes()[0]), "{c}");
        }
    }

    #[test]
    fn typed_codes_are_normalized() {
        assert_eq!(normalize_code(" abcde-fgh23 "), "ABCDEFGH23");
        assert_eq!(normalize_code("ab cd\tef"), "ABCDEF");
        assert_eq!(parse_join_code("abc-def"), Some("ABCDEF".into()));
        assert_eq!(parse_join_code("ABCDE"), None);
        assert_eq!(parse_join_code("ABCDEI"), None, "I is not in the alphabet");
        assert_eq!(parse_join_code("ABCDEFG"), None);
    }

    #[test]
    fn pseudonyms_are_tidied_and_kept_as_typed() {
        assert_eq!(validate_pseudonym("  Léa   M ").unwrap(), "Léa M");
        // Decomposed é (e + combining acute) becomes the composed one.
        assert_eq!(validate_pseudonym("Le\u{301}a").unwrap(), "Léa");
        let script = "<script>alert(1)</script>";
        assert_eq!(validate_pseudonym(script).unwrap(), script);
        assert_eq!(validate_pseudonym("李小龙").unwrap(), "李小龙");
        assert_eq!(validate_pseudonym("x_y-z.1").unwrap(), "x_y-z.1");
    }

    #[test]
    fn pseudonyms_out_of_bounds_or_with_hidden_characters_are_refused() {
        assert!(validate_pseudonym("a").is_err());
        assert!(validate_pseudonym("   ").is_err());
        assert!(validate_pseudonym(&"a".repeat(PSEUDONYM_MAX_CHARS)).is_ok());
        assert!(validate_pseudonym(&"a".repeat(PSEUDONYM_MAX_CHARS + 1)).is_err());
        // Length counts characters, not bytes.
        assert!(validate_pseudonym(&"é".repeat(PSEUDONYM_MAX_CHARS)).is_ok());
        for bad in [
            "Léa\nM",
            "Léa\tM",
            "Lé\u{0}a",
            "Léa\u{200B}",
            "\u{202E}aéL",
            "Lé\u{7F}a",
        ] {
            assert!(validate_pseudonym(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pseudonym_keys_fold_case_accents_and_spaces() {
        let key = pseudonym_key("Léa M");
        for same in ["lea m", "LEA  M", "Le\u{301}a M", " léa m "] {
            assert_eq!(pseudonym_key(same), key, "{same}");
        }
        assert_ne!(pseudonym_key("Léa M"), pseudonym_key("Léo M"));
        assert_eq!(pseudonym_key("Cœur"), "coeur");
        assert_eq!(pseudonym_key("Straße"), "strasse");
        assert_eq!(pseudonym_key("Ça Va"), "ca va");
    }

    #[test]
    fn look_alike_pseudonyms_share_a_skeleton() {
        let latin = pseudonym_skeleton("Alice Martin");
        // Cyrillic А (U+0410) and а (U+0430), Greek ο, digit 0, "rn" for "m".
        for same in [
            "\u{410}lice Martin",
            "Alice M\u{430}rtin",
            "Alice Mart\u{456}n",
            "alice martin",
            "Àlice  Martin",
            "Alice Rnartin",
        ] {
            assert_eq!(pseudonym_skeleton(same), latin, "{same}");
        }
        assert_eq!(pseudonym_skeleton("B0b"), pseudonym_skeleton("Bob"));
        assert_eq!(pseudonym_skeleton("B\u{3bf}b"), pseudonym_skeleton("Bob"));
        assert_ne!(
            pseudonym_skeleton("Alice Martin"),
            pseudonym_skeleton("Alice Martine")
        );
        assert_ne!(pseudonym_skeleton("Léa"), pseudonym_skeleton("Léo"));
        // Scripts other than Latin keep their own pseudonyms.
        assert_ne!(pseudonym_skeleton("李小龙"), pseudonym_skeleton("李小虎"));
    }

    #[test]
    fn logins_and_passwords() {
        assert_eq!(validate_login(" Mme.Dupont ").unwrap(), "mme.dupont");
        assert!(validate_login("ab").is_err());
        assert!(validate_login(".dupont").is_err());
        assert!(validate_login("du pont").is_err());
        assert!(validate_login("dupönt").is_err());
        assert!(validate_login(&"a".repeat(33)).is_err());
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(257)).is_err());
    }

    #[test]
    fn names_and_roles() {
        assert_eq!(
            validate_classroom_name(" NSI  1re G2 ").unwrap(),
            "NSI 1re G2"
        );
        assert!(validate_classroom_name("").is_err());
        assert_eq!(validate_school("").unwrap(), "");
        assert!(validate_display_name("a\u{202E}b").is_err());
        for role in [Role::Student, Role::Teacher, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert!(Role::Admin.is_teacher() && !Role::Student.is_teacher());
    }
}
