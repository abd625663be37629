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
        let credential = credential.clone();
        use_effect_with(store.login_link.clone(), move |link| {
            if let Some(l) = link {
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
