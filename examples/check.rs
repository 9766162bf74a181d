//! Ask Figma whether someone paid, from the command line.
//!
//! ```text
//! cargo run --example check -- --user 2001 --plugin 1122334455
//! cargo run --example check -- --token ppt_...
//! cargo run --example check -- --demo --user 2001 --plugin 1122334455   # on the embedded mock
//! ```
//!
//! Uses `FIGMA_TOKEN` (and `FIGMA_API_URL`). Exit code 0: paid (PAID or
//! TRIAL); 1: not paid; 2: could not tell.

use std::process::ExitCode;

use figma_paywall::{
    mock::{MockFigma, DEMO_USERS},
    Error, PaymentStatus, PaymentsClient, PluginPaymentToken, Resource, UserId,
};

const USAGE: &str =
    "usage: check [--demo] (--user ID (--plugin ID | --widget ID | --file ID) | --token TOKEN)";

enum Question {
    User(UserId, Resource),
    Token(PluginPaymentToken),
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<(bool, Question), String> {
    let (mut demo, mut user, mut resource, mut token) = (false, None, None, None);
    while let Some(flag) = args.next() {
        if flag == "--demo" {
            demo = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--user" => user = Some(UserId::new(&value).map_err(|e| e.to_string())?),
            "--plugin" => resource = Some(Resource::plugin(&value)),
            "--widget" => resource = Some(Resource::widget(&value)),
            "--file" => resource = Some(Resource::community_file(&value)),
            "--token" => token = Some(PluginPaymentToken::new(&value).map_err(|e| e.to_string())?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let question = match (user, resource, token) {
        (Some(user), Some(resource), None) => {
            Question::User(user, resource.map_err(|e| e.to_string())?)
        }
        (None, None, Some(token)) => Question::Token(token),
        _ => {
            return Err(
                "give --user with one of --plugin, --widget, --file; or --token alone".into(),
            )
        }
    };
    Ok((demo, question))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (demo, question) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // --demo: the demo's users on plugin 1122334455: 2001 bought it, 2002
    // is in a trial, 2003 has not paid.
    let mock = if demo {
        MockFigma::start().await.ok()
    } else {
        None
    };
    let client = match &mock {
        Some(mock) => {
            let plugin = Resource::plugin("1122334455").expect("valid ID");
            for (id, _, _, status) in DEMO_USERS {
                mock.set_status(&UserId::new(id).expect("valid ID"), &plugin, status);
            }
            mock.client()
        }
        None => PaymentsClient::from_env(),
    };
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            eprintln!("could not tell: {e}");
            return ExitCode::from(2);
        }
    };
    let answer = match &question {
        Question::User(user, resource) => client.payment_by_user(user, resource).await,
        Question::Token(token) => client.payment_by_token(token).await,
    };
    match answer {
        Ok(info) => {
            let paid = matches!(
                info.payment_status,
                PaymentStatus::Paid | PaymentStatus::Trial
            );
            println!(
                "user {} {} {} {} {}{}",
                info.user_id,
                if paid {
                    "has access to"
                } else {
                    "has not paid for"
                },
                info.resource_type,
                info.resource_id,
                info.payment_status,
                info.date_of_purchase
                    .map(|d| format!(" (bought {d})"))
                    .unwrap_or_default()
            );
            ExitCode::from(if paid { 0 } else { 1 })
        }
        Err(e) => {
            let hint = match &e {
                Error::Unauthorized { .. } => {
                    " (is FIGMA_TOKEN right and unexpired? for --token: tokens are short-lived)"
                }
                Error::RateLimited(_) => " (wait and try again)",
                _ => "",
            };
            eprintln!("could not tell: {e}{hint}");
            ExitCode::from(2)
        }
    }
}
