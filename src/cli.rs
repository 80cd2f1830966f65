//! The command line: `nsi-live` (or `nsi-live serve`) runs the server; `nsi-live admin …` sets up
//! accounts on the configured database, for bootstrapping a deployment. Same settings as the
//! server (config files, `NSI__…`, `DATABASE_URL`).

use std::io::BufRead;

use anyhow::{Context, bail};

use crate::auth::password;
use crate::config::Settings;
use crate::domain::accounts::{self, Role, generate_invite_code, invite_hash};
use crate::domain::ids::ClassroomId;
use crate::domain::time::now_ms;
use crate::load_school::LoadSchoolPlan;
use crate::store::Store;
use crate::store::users::NewAccount;

pub const USAGE: &str = "\
Usage:
  nsi-live [serve]
      Run the server (settings: config/*.toml, NSI__SECTION__KEY, PORT, DATABASE_URL, REDIS_URL).
  nsi-live admin create-teacher --login LOGIN --name NAME [--password-env VAR]
  nsi-live admin create-admin   --login LOGIN --name NAME [--password-env VAR]
      Create an account on the configured database. The password is read from the environment
      variable VAR if given, else from the first line of standard input.
  nsi-live admin reset-password --login LOGIN [--password-env VAR]
      Set a new password for a teacher or admin (password read as above); their sessions end.
  nsi-live admin create-invite [--days N]
      Print a single-use teacher sign-up code (for auth.signup = \"invite_only\"), valid N days
      (default 14).
  nsi-live admin backup --to FILE
      Write a consistent copy of the embedded SQLite database to FILE (a new file), safe while the
      server runs. PostgreSQL: use pg_dump (docs/deploy.md).
  nsi-live admin purge-class --id ID --confirm NAME
      Delete a class for good (end of the school year): the class, and every student whose only
      class it was, with their attempts, code, progress and badges. NAME must be the class's name.
      Prefer the teacher's button (or the API) while a server runs: it also signs the students out
      at once; from here their sessions end within auth.session_cache_ttl_secs.
  nsi-live admin seed-load --classes C --students S [--teachers T] [--prefix P] --out FILE
      Load tests only (a throw-away database): write T teachers (default: one per 4 classes),
      C classes of S students each, and a session for each of them, in one transaction; then
      the JSON fixture the load generator reads (session tokens, class ids, the exercises to
      submit) to FILE. Logins and pseudonyms start with P (default \"load\"). See loadtests/.
  nsi-live help
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Help,
    CreateAccount {
        role: Role,
        login: String,
        name: String,
        password_env: Option<String>,
    },
    ResetPassword {
        login: String,
        password_env: Option<String>,
    },
    CreateInvite {
        days: u32,
    },
    Backup {
        to: std::path::PathBuf,
    },
    PurgeClass {
        id: i64,
        confirm: String,
    },
    SeedLoad {
        plan: LoadSchoolPlan,
        out: std::path::PathBuf,
    },
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Command> {
    let args: Vec<String> = args.into_iter().collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["serve"] => Ok(Command::Serve),
        ["help" | "--help" | "-h"] => Ok(Command::Help),
        ["admin", "create-teacher", rest @ ..] => parse_account(Role::Teacher, rest),
        ["admin", "create-admin", rest @ ..] => parse_account(Role::Admin, rest),
        ["admin", "reset-password", rest @ ..] => {
            let mut flags = Flags::parse(rest, &["--login", "--password-env"])?;
            Ok(Command::ResetPassword {
                login: flags.required("--login")?,
                password_env: flags.take("--password-env"),
            })
        }
        ["admin", "create-invite", rest @ ..] => {
            let mut flags = Flags::parse(rest, &["--days"])?;
            let days = match flags.take("--days") {
                None => 14,
                Some(value) => value
                    .parse()
                    .ok()
                    .filter(|d| *d > 0)
                    .with_context(|| format!("--days {value:?}: not a positive number"))?,
            };
            Ok(Command::CreateInvite { days })
        }
        ["admin", "backup", rest @ ..] => {
            let mut flags = Flags::parse(rest, &["--to"])?;
            Ok(Command::Backup {
                to: flags.required("--to")?.into(),
            })
        }
        ["admin", "purge-class", rest @ ..] => {
            let mut flags = Flags::parse(rest, &["--id", "--confirm"])?;
            let id = flags.required("--id")?;
            Ok(Command::PurgeClass {
                id: id
                    .parse()
                    .ok()
                    .filter(|id| *id > 0)
                    .with_context(|| format!("--id {id:?}: not a class id"))?,
                confirm: flags.required("--confirm")?,
            })
        }
        ["admin", "seed-load", rest @ ..] => {
            let mut flags = Flags::parse(
                rest,
                &["--teachers", "--classes", "--students", "--prefix", "--out"],
            )?;
            let classes = count(&flags.required("--classes")?, "--classes")?;
            let teachers = match flags.take("--teachers") {
                Some(t) => count(&t, "--teachers")?,
                None => classes.div_ceil(4),
            };
            let plan = LoadSchoolPlan {
                teachers,
                classes,
                students_per_class: count(&flags.required("--students")?, "--students")?,
                prefix: flags.take("--prefix").unwrap_or_else(|| "load".to_owned()),
            };
            plan.check()?;
            Ok(Command::SeedLoad {
                plan,
                out: flags.required("--out")?.into(),
            })
        }
        _ => bail!("unknown command {:?}\n\n{USAGE}", args.join(" ")),
    }
}

fn count(value: &str, flag: &str) -> anyhow::Result<usize> {
    value
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("{flag} {value:?}: not a positive number"))
}

fn parse_account(role: Role, rest: &[&str]) -> anyhow::Result<Command> {
    let mut flags = Flags::parse(rest, &["--login", "--name", "--password-env"])?;
    Ok(Command::CreateAccount {
        role,
        login: flags.required("--login")?,
        name: flags.required("--name")?,
        password_env: flags.take("--password-env"),
    })
}

/// `--flag value` pairs, each flag among the allowed ones, at most once.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(rest: &[&str], allowed: &[&str]) -> anyhow::Result<Flags> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            if !allowed.contains(flag) {
                bail!("unknown option {flag:?}\n\n{USAGE}");
            }
            if pairs.iter().any(|(f, _)| f == flag) {
                bail!("{flag} is given twice");
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            pairs.push(((*flag).to_owned(), (*value).to_owned()));
        }
        Ok(Flags(pairs))
    }

    fn take(&mut self, flag: &str) -> Option<String> {
        let i = self.0.iter().position(|(f, _)| f == flag)?;
        Some(self.0.remove(i).1)
    }

    fn required(&mut self, flag: &str) -> anyhow::Result<String> {
        self.take(flag)
            .with_context(|| format!("{flag} is required"))
    }
}

/// Runs a command other than `Serve`.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => bail!("`serve` is run by main"),
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::CreateAccount {
            role,
            login,
            name,
            password_env,
        } => {
            let login = accounts::validate_login(&login).map_err(|e| anyhow::anyhow!(e.0))?;
            let name = accounts::validate_display_name(&name).map_err(|e| anyhow::anyhow!(e.0))?;
            let password = read_password(password_env.as_deref())?;
            accounts::validate_password(&password).map_err(|e| anyhow::anyhow!(e.0))?;
            let store = connect().await?;
            let hash = password::hash(password).await?;
            let outcome = store
                .create_account(role, &login, &name, &hash, None, now_ms())
                .await;
            store.close().await;
            match outcome? {
                NewAccount::Created(id) => {
                    println!("Created {} {login:?} (id {id}).", role.as_str());
                    Ok(())
                }
                NewAccount::LoginTaken => bail!("the login {login:?} is already taken"),
                NewAccount::InvalidInvite => bail!("unexpected invite refusal"),
            }
        }
        Command::ResetPassword {
            login,
            password_env,
        } => {
            let login = accounts::normalize_login(&login);
            let password = read_password(password_env.as_deref())?;
            accounts::validate_password(&password).map_err(|e| anyhow::anyhow!(e.0))?;
            let store = connect().await?;
            let outcome = reset_password(&store, &login, password).await;
            store.close().await;
            outcome?;
            println!("New password set for {login:?}; their sessions have ended.");
            Ok(())
        }
        Command::CreateInvite { days } => {
            let code = generate_invite_code(&mut rand::rng());
            let now = now_ms();
            let expires_at = now + i64::from(days) * 86_400_000;
            let store = connect().await?;
            let outcome = store
                .create_invite(&invite_hash(&code), None, Some(expires_at), now)
                .await;
            store.close().await;
            outcome?;
            eprintln!("Teacher invite, single use, valid {days} day(s):");
            println!("{code}");
            Ok(())
        }
        Command::Backup { to } => {
            let store = connect().await?;
            let outcome = store.backup_to(&to).await;
            store.close().await;
            outcome?;
            println!("Backup written to {}.", to.display());
            Ok(())
        }
        Command::PurgeClass { id, confirm } => {
            let store = connect().await?;
            let outcome = purge_class(&store, ClassroomId(id), &confirm).await;
            store.close().await;
            let report = outcome?;
            println!(
                "Class {id} purged: {} student account(s) deleted with {} attempt(s); {} student(s) kept (in another class).",
                report.students_deleted, report.attempts_deleted, report.students_kept
            );
            Ok(())
        }
        Command::SeedLoad { plan, out } => {
            let settings = Settings::load()?;
            crate::load_school::seed(&settings, &plan, &out).await?;
            Ok(())
        }
    }
}

async fn purge_class(
    store: &Store,
    id: ClassroomId,
    confirm: &str,
) -> anyhow::Result<crate::store::data_care::PurgeReport> {
    let Some(name) = store.classroom_name(id).await? else {
        bail!("no class has the id {}", id.0);
    };
    if name.trim() != confirm.trim() {
        bail!("--confirm {confirm:?} is not the class's name ({name:?}): nothing deleted");
    }
    store.purge_classroom(id).await
}

async fn reset_password(store: &Store, login: &str, password: String) -> anyhow::Result<()> {
    let Some(account) = store.credentials_by_login(login).await? else {
        bail!("no active account has the login {login:?}");
    };
    let hash = password::hash(password).await?;
    if !store.set_password_hash(account.id, &hash).await? {
        bail!("the account {login:?} has no password to reset");
    }
    store.delete_user_sessions(account.id).await?;
    Ok(())
}

async fn connect() -> anyhow::Result<Store> {
    let settings = Settings::load()?;
    Store::connect(&settings.database).await
}

fn read_password(env_var: Option<&str>) -> anyhow::Result<String> {
    if let Some(var) = env_var {
        return std::env::var(var)
            .with_context(|| format!("environment variable {var} is not set"));
    }
    eprintln!("Password (first line of standard input):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password given on standard input");
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(args("")).unwrap(), Command::Serve);
        assert_eq!(parse(args("serve")).unwrap(), Command::Serve);
        assert_eq!(parse(args("--help")).unwrap(), Command::Help);
        assert_eq!(
            parse(args(
                "admin create-teacher --login l --name N --password-env PW"
            ))
            .unwrap(),
            Command::CreateAccount {
                role: Role::Teacher,
                login: "l".into(),
                name: "N".into(),
                password_env: Some("PW".into()),
            }
        );
        assert!(matches!(
            parse(args("admin create-admin --name N --login a")).unwrap(),
            Command::CreateAccount {
                role: Role::Admin,
                password_env: None,
                ..
            }
        ));
        assert_eq!(
            parse(args("admin reset-password --login l")).unwrap(),
            Command::ResetPassword {
                login: "l".into(),
                password_env: None,
            }
        );
        assert_eq!(
            parse(args("admin create-invite")).unwrap(),
            Command::CreateInvite { days: 14 }
        );
        assert_eq!(
            parse(args("admin create-invite --days 3")).unwrap(),
            Command::CreateInvite { days: 3 }
        );
        assert_eq!(
            parse(args("admin backup --to /tmp/b.db")).unwrap(),
            Command::Backup {
                to: "/tmp/b.db".into()
            }
        );
        assert_eq!(
            parse(args(
                "admin seed-load --classes 9 --students 30 --out f.json"
            ))
            .unwrap(),
            Command::SeedLoad {
                plan: LoadSchoolPlan {
                    teachers: 3,
                    classes: 9,
                    students_per_class: 30,
                    prefix: "load".into()
                },
                out: "f.json".into()
            }
        );
        assert_eq!(
            parse(args("admin purge-class --id 42 --confirm 2ndeB")).unwrap(),
            Command::PurgeClass {
                id: 42,
                confirm: "2ndeB".into()
            }
        );
    }

    #[test]
    fn mistakes_are_explained() {
        for bad in [
            "frobnicate",
            "admin create-teacher --login l",
            "admin create-teacher --login",
            "admin create-teacher --login l --name N --colour red",
            "admin create-invite --days 0",
            "admin reset-password --login l --name N",
            "admin reset-password",
            "admin create-teacher --login a --login b --name N",
            "admin backup",
            "admin purge-class --id 42",
            "admin purge-class --id x --confirm N",
            "admin purge-class --id -1 --confirm N",
            "admin seed-load --classes 2 --students 3",
            "admin seed-load --classes 0 --students 3 --out f",
            "admin seed-load --classes 2 --students 3 --prefix A! --out f",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad}");
        }
    }
}
