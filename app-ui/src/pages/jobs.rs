//! The technician's list: today and the coming days, by day, with status and time.

use yew::prelude::*;

use crate::app::Store;
use crate::i18n::{self, Msg, t};
use crate::state::{Action, Screen, by_day};

#[function_component(Jobs)]
pub fn jobs() -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let today = store.today.to_string();
    let groups = by_day(&store.jobs);
    html! {
        <main class="jobs" id="job-list">
            if groups.is_empty() {
                <p class="empty">{ t(lang, Msg::NoJobs) }</p>
            }
            { for groups.into_iter().map(|(day, jobs)| {
                let heading = if day == today { format!("{} · {day}", t(lang, Msg::Today)) } else { day.clone() };
                html! {
                    <section class="day" key={day.clone()} data-day={day.clone()}>
                        <h2>{ heading }</h2>
                        <ul>
                            { for jobs.into_iter().map(|j| {
                                let open = {
                                    let (store, id) = (store.clone(), j.id.clone());
                                    Callback::from(move |_| store.dispatch(Action::Go(Screen::Job(id.clone()))))
                                };
                                html! {
                                    <li key={j.id.clone()}>
                                        <button class={classes!("job", format!("st-{}", j.status), format!("pr-{}", j.priority))}
                                            data-job={j.id.clone()} onclick={open}>
                                            <span class="time">{ j.start.clone().unwrap_or_else(|| "—".into()) }</span>
                                            <span class="title">{ &j.title }</span>
                                            <span class="where">{ &j.customer }{ " · " }{ &j.address }</span>
                                            <span class="pill">{ i18n::status(lang, &j.status) }</span>
                                            if j.conflicts > 0 { <span class="badge">{ "!" }</span> }
                                        </button>
                                    </li>
                                }
                            }) }
                        </ul>
                    </section>
                }
            }) }
        </main>
    }
}
