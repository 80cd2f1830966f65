//! Error reporting to Sentry, when `sentry.dsn` (SENTRY_DSN) is set: panics and `error!` events
//! become Sentry events, `warn!`/`info!` lines their breadcrumbs (sentry-tracing's defaults).
//! Students are minors: nothing personal leaves the server. The client never attaches default
//! personal data (`send_default_pii = false`), and `scrub` removes, from every event, the user,
//! the request (URL, headers, cookies, body), the host name and any breadcrumb data; our logs
//! carry no pseudonym, login, address or token in the first place (docs/deploy.md).

use secrecy::ExposeSecret;
use sentry::protocol::Event;

use crate::config::SentrySettings;

/// Starts the Sentry client when a DSN is configured; keep the guard for the process's life (it
/// flushes pending events, at most 2 s, when dropped).
pub fn init(settings: &SentrySettings) -> anyhow::Result<Option<sentry::ClientInitGuard>> {
    let dsn = settings.dsn.expose_secret().trim();
    if dsn.is_empty() {
        return Ok(None);
    }
    // Never echo the DSN (it holds the project's key).
    dsn.parse::<sentry::types::Dsn>().map_err(|_| {
        anyhow::anyhow!("configuration key `sentry.dsn` (SENTRY_DSN): not a valid Sentry DSN")
    })?;
    let options = sentry::ClientOptions::new()
        .dsn(dsn)
        .maybe_release(sentry::release_name!())
        .environment(settings.environment.clone())
        .sample_rate(settings.sample_rate)
        .send_default_pii(false)
        .before_send(scrub)
        .before_breadcrumb(|mut crumb: sentry::Breadcrumb| {
            crumb.data.clear();
            Some(crumb)
        });
    let guard = sentry::init(options);
    Ok(Some(guard))
}

/// What may leave the server: the message, the level, the code location and the stack; never
/// who, from where, or what they sent.
pub fn scrub(mut event: Event<'static>) -> Option<Event<'static>> {
    event.user = None;
    event.request = None;
    event.server_name = None;
    event
        .breadcrumbs
        .values
        .iter_mut()
        .for_each(|crumb| crumb.data.clear());
    Some(event)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn settings(dsn: &str) -> SentrySettings {
        SentrySettings {
            dsn: SecretString::from(dsn.to_owned()),
            environment: "test".into(),
            sample_rate: 1.0,
        }
    }

    #[test]
    fn no_dsn_no_reporting() {
        assert!(init(&settings("")).unwrap().is_none());
        assert!(init(&settings("  ")).unwrap().is_none());
    }

    #[test]
    fn a_bad_dsn_is_refused_without_echoing_it() {
        let Err(error) = init(&settings("not-a-dsn-secretkey")) else {
            panic!("a bad DSN was accepted");
        };
        let error = error.to_string();
        assert!(error.contains("sentry.dsn"), "{error}");
        assert!(!error.contains("secretkey"), "{error}");
    }

    #[test]
    fn scrub_removes_who_and_from_where() {
        let mut event = Event {
            user: Some(sentry::User {
                username: Some("eleve".into()),
                ..Default::default()
            }),
            request: Some(sentry::protocol::Request {
                url: Some("http://x/recover?code=1".parse().unwrap()),
                ..Default::default()
            }),
            server_name: Some("host-1".into()),
            message: Some("kept".into()),
            ..Default::default()
        };
        event.breadcrumbs.values.push(sentry::Breadcrumb {
            data: [("login".to_owned(), "eleve".into())].into_iter().collect(),
            ..Default::default()
        });
        let event = scrub(event).unwrap();
        assert!(event.user.is_none() && event.request.is_none() && event.server_name.is_none());
        assert!(event.breadcrumbs.values[0].data.is_empty());
        assert_eq!(event.message.as_deref(), Some("kept"));
    }
}
