//! First run: the server address and a magic link (or an office token).

use shared::ipc::LoginArgs;
use yew::prelude::*;

use super::use_text;
use crate::app::{Store, spawn};
use crate::i18n::{Msg, t};
use crate::ipc;
use crate::state::Action;

#[function_component(Login)]
pub fn login() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let (server, on_server) = use_text("https://");
    let (credential, on_credential) = use_text("");
    let busy = use_state(|| false);
    {
        let (credential, server) = (credential.clone(), server.clone());
        use_effect_with(store.login_link.clone(), move |link| {
            if let Some(l) = link {
                // An App Link / Universal Link comes from the server itself: it names it.
                if let Some(origin) = link_origin(l) {
                    server.set(origin);
                }
                credential.set(l.clone());
            }
        });
    }
    let submit = {
        let (store, server, credential, busy) =
            (store, server.clone(), credential.clone(), busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            busy.set(true);
            let args = LoginArgs {
                server: (*server).clone(),
                credential: (*credential).clone(),
            };
            let busy = busy.clone();
            spawn(&store, async move {
                let r = ipc::session_login(args).await;
                busy.set(false);
                r.map(|s| Action::Session(Some(s)))
            });
        })
    };
    html! {
        <main class="login">
            <form onsubmit={submit} aria-busy={(*busy).to_string()}>
                <h1>{ t(lang, Msg::AppName) }</h1>
                <label for="server">{ t(lang, Msg::Server) }</label>
                <input id="server" type="url" inputmode="url" autocomplete="url" required=true
                    value={(*server).clone()} oninput={on_server} />
                <label for="credential">{ t(lang, Msg::LoginLink) }</label>
                <textarea id="credential" rows="3" required=true autocomplete="off" spellcheck="false"
                    value={(*credential).clone()} oninput={on_credential}></textarea>
                <p class="help">{ t(lang, Msg::LoginHelp) }</p>
                <button id="login" type="submit" disabled={*busy}>{ t(lang, Msg::LogIn) }</button>
            </form>
        </main>
    }
}

/// The server a login link came from, for an `https://server/login#token=…` link.
fn link_origin(link: &str) -> Option<String> {
    let rest = link.trim().strip_prefix("https://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains('@')).then(|| format!("https://{host}"))
}

#[cfg(test)]
mod tests {
    use super::link_origin;

    #[test]
    fn an_https_login_link_names_its_server() {
        assert_eq!(
            link_origin("https://sync.example.net/login#token=abc").as_deref(),
            Some("https://sync.example.net")
        );
        assert_eq!(
            link_origin("https://sync.example.net:8443/login?token=abc").as_deref(),
            Some("https://sync.example.net:8443")
        );
        assert_eq!(link_origin("fsm://login?token=abc"), None);
        assert_eq!(link_origin("https://evil@sync.example.net/login"), None);
    }
}
