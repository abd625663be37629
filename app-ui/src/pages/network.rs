//! « Réseau »: the customer's boxes (the ONTs and routers at the job's address) as the ACS sees
//! them: fibre levels coloured by threshold, WAN, Wi-Fi networks with their clients, and the
//! devices hanging off each mesh node. Read live when the server answers; otherwise the last
//! reading kept on the device, with its age. Refresh and reboot (confirmed in two steps). Below
//! each box, its fibre line as the OLT last saw it, and the outage it is part of.

use shared::ipc::{CommandError, EquipmentView, NetworkActArgs, NetworkView};
use shared::network::{DeviceSummary, Level, LineView, Link, OnuState, Source};
use yew::prelude::*;

use crate::app::Store;
use crate::i18n::{self, Lang, Msg, t};
use crate::ipc;

#[derive(Properties, PartialEq)]
pub struct NetworkProps {
    pub equipment: Vec<EquipmentView>,
}

/// The boxes worth asking the ACS about.
fn is_box(e: &EquipmentView) -> bool {
    matches!(e.kind.as_str(), "ONT" | "Router")
}

#[function_component(Network)]
pub fn network(p: &NetworkProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let boxes: Vec<EquipmentView> = p.equipment.iter().filter(|e| is_box(e)).cloned().collect();
    if boxes.is_empty() {
        return html! {};
    }
    html! {
        <section class="card" id="network">
            <h2>{ t(lang, Msg::Network) }</h2>
            { for boxes.into_iter().map(|e| { let key = e.id.clone(); html! { <NetBox {key} equipment={e} /> } }) }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct BoxProps {
    equipment: EquipmentView,
}

/// `12 j 3 h`, `4 h 21 min`, `7 min`.
pub fn uptime(s: u64) -> String {
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} j {h} h"),
    }
}

fn level_class(l: Level) -> &'static str {
    match l {
        Level::Ok => "lvl-ok",
        Level::Warning => "lvl-warning",
        Level::Critical => "lvl-critical",
        Level::NotReported => "lvl-none",
    }
}

fn level_word(lang: Lang, l: Level) -> &'static str {
    t(
        lang,
        match l {
            Level::Ok => Msg::LevelOk,
            Level::Warning => Msg::LevelWarning,
            Level::Critical => Msg::LevelCritical,
            Level::NotReported => Msg::NotReported,
        },
    )
}

fn dbm(lang: Lang, v: Option<f64>) -> String {
    v.map_or_else(
        || t(lang, Msg::NotReported).to_owned(),
        |x| format!("{x:.2} dBm"),
    )
}

/// What the server says went wrong, in the UI's words where we know the case.
fn problem(lang: Lang, code: &str, message: &str) -> String {
    let known = match code {
        "acs_off" => Some(Msg::NetNoAcs),
        "no_device" => Some(Msg::NetNoBox),
        "not_your_equipment" => Some(Msg::NetNotYours),
        _ => None,
    };
    known.map_or_else(|| message.to_owned(), |m| t(lang, m).to_owned())
}

#[function_component(NetBox)]
fn net_box(p: &BoxProps) -> Html {
    let store = use_context::<Store>().expect("the App provides the store");
    let lang = store.lang;
    let view = use_state(|| None::<Result<NetworkView, CommandError>>);
    let said = use_state(|| None::<String>);
    let confirming = use_state(|| false);
    let busy = use_state(|| false);
    {
        let (view, id) = (view.clone(), p.equipment.id.clone());
        use_effect_with(id, move |id| {
            let id = id.clone();
            wasm_bindgen_futures::spawn_local(async move {
                view.set(Some(ipc::network_get(id).await));
            });
        });
    }
    let act = |action: &'static str| {
        let (view, said, busy, confirming, id) = (
            view.clone(),
            said.clone(),
            busy.clone(),
            confirming.clone(),
            p.equipment.id.clone(),
        );
        Callback::from(move |_| {
            let (view, said, busy) = (view.clone(), said.clone(), busy.clone());
            let args = NetworkActArgs {
                equipment: id.clone(),
                action: action.to_owned(),
                confirm: action == "reboot",
            };
            confirming.set(false);
            busy.set(true);
            wasm_bindgen_futures::spawn_local(async move {
                match ipc::network_act(args).await {
                    Ok(done) => {
                        let m = match done.outcome.as_str() {
                            "done" if done.action == "reboot" => Msg::NetRebooting,
                            "done" => Msg::NetDone,
                            "queued" => Msg::NetQueued,
                            "faulted" => Msg::NetFaulted,
                            _ => Msg::NetUnreachable,
                        };
                        said.set(Some(t(lang, m).to_owned()));
                        if done.view.reading.is_some() {
                            view.set(Some(Ok(done.view)));
                        }
                    }
                    Err(e) => said.set(Some(e.message)),
                }
                busy.set(false);
            });
        })
    };
    let e = &p.equipment;
    let head = html! {
        <h3>{ &e.kind }{ " " }<code>{ &e.serial }</code></h3>
    };
    let body = match &*view {
        None => html! { <p class="help" aria-busy="true">{ t(lang, Msg::NetLoading) }</p> },
        Some(Err(err)) => html! { <p class="help net-error">{ &err.message }</p> },
        Some(Ok(v)) => match &v.reading {
            None => html! {
                <p class="help net-error">{ problem(lang, v.code.as_deref().unwrap_or(""), v.error.as_deref().unwrap_or("")) }</p>
            },
            Some(r) => {
                let now = js_sys::Date::now() as i64;
                let stale = if v.offline {
                    Some(Msg::NetOffline)
                } else if r.source == Source::Snapshot {
                    Some(Msg::NetSnapshot)
                } else {
                    None
                };
                html! {
                    <>
                        if let Some(m) = stale {
                            <p class="notice net-stale">{ t(lang, m) }{ " " }{ i18n::ago(lang, now, r.fetched_at) }</p>
                        }
                        { summary(lang, now, r.fetched_at, &r.summary) }
                    </>
                }
            }
        },
    };
    let online = matches!(&*view, Some(Ok(v)) if !v.offline && v.reading.is_some());
    let line = match &*view {
        Some(Ok(v)) => v.line.clone(),
        _ => None,
    };
    html! {
        <div class="netbox" data-equipment={e.id.clone()}>
            { head }
            { body }
            if let Some(l) = line { { line_view(lang, js_sys::Date::now() as i64, &l) } }
            if let Some(s) = &*said { <p class="help net-said" role="status">{ s }</p> }
            if online {
                <div class="row">
                    <button class="net-refresh" disabled={*busy} onclick={act("all")}>{ t(lang, Msg::NetRefresh) }</button>
                    if *confirming {
                        <button class="danger net-reboot-confirm" disabled={*busy} onclick={act("reboot")}>{ t(lang, Msg::NetRebootConfirm) }</button>
                        <button class="link" onclick={{ let c = confirming.clone(); Callback::from(move |_| c.set(false)) }}>{ t(lang, Msg::Cancel) }</button>
                    } else {
                        <button class="net-reboot" disabled={*busy} onclick={{ let c = confirming.clone(); Callback::from(move |_| c.set(true)) }}>{ t(lang, Msg::NetReboot) }</button>
                    }
                </div>
                if *confirming { <p class="help">{ t(lang, Msg::NetRebootHelp) }</p> }
            }
        </div>
    }
}

/// An ONU state in words.
pub fn onu_word(lang: Lang, s: OnuState) -> &'static str {
    t(
        lang,
        match s {
            OnuState::Online => Msg::OnuOnline,
            OnuState::Los => Msg::OnuLos,
            OnuState::DyingGasp => Msg::OnuDyingGasp,
            OnuState::Offline => Msg::OnuOffline,
            OnuState::Other => Msg::OnuOther,
        },
    )
}

/// The kind of an incident in words.
pub fn incident_word(lang: Lang, k: shared::network::IncidentKind) -> &'static str {
    use shared::network::IncidentKind;
    t(
        lang,
        match k {
            IncidentKind::PortOutage => Msg::PortOutage,
            IncidentKind::CustomerFault => Msg::CustomerFault,
            IncidentKind::OltUnreachable => Msg::OltUnreachable,
        },
    )
}

/// The fibre line: OLT, port and ONU, its state and since when, its levels, and the incident
/// it is part of.
fn line_view(lang: Lang, now: i64, l: &LineView) -> Html {
    let class = if l.state.is_down() {
        "lvl-critical"
    } else if l.state == OnuState::Online {
        "lvl-ok"
    } else {
        "lvl-warning"
    };
    html! {
        <div class="net-line" id="net-line">
            <h4>{ t(lang, Msg::NetLine) }</h4>
            <p>
                <span class={classes!("pill", class)} id="net-onu-state">{ onu_word(lang, l.state) }</span>
                if let Some(since) = l.since { { " · " }{ i18n::ago(lang, now, since) } }
            </p>
            <p class="help">{ format!("{} · {} · ONU {}", l.olt, l.port, l.onu) }
                if let Some(rx) = l.rx_dbm { { format!(" · RX {rx:.2} dBm") } }
            </p>
            if !l.olt_reachable { <p class="notice">{ t(lang, Msg::NetLineStale) }</p> }
            if let Some(i) = &l.incident {
                <p class="notice net-incident">
                    <strong>{ incident_word(lang, i.kind) }</strong>
                    if let Some(of) = i.of { { format!(" · {}/{of} {}", i.onus.len(), t(lang, Msg::OnusDown)) } }
                    { " · " }{ i18n::ago(lang, now, i.started) }
                </p>
            }
        </div>
    }
}

fn summary(lang: Lang, now: i64, fetched_at: i64, s: &DeviceSummary) -> Html {
    let not = t(lang, Msg::NotReported);
    let ident = [s.identity.model.as_deref(), s.identity.firmware.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
    let up_wan: Vec<String> = s
        .wan
        .iter()
        .filter(|w| w.up)
        .map(|w| {
            format!(
                "{} {}",
                w.mode.clone().unwrap_or_default(),
                w.ip.clone().unwrap_or_default()
            )
        })
        .collect();
    html! {
        <>
            <p class="help">{ ident }</p>
            <dl class="net-facts">
                <dt>{ t(lang, Msg::NetLastInform) }</dt>
                <dd class="net-inform">{ s.last_inform_age_s.map_or_else(|| not.to_owned(), |a| i18n::ago(lang, now, fetched_at - a * 1000)) }</dd>
                <dt>{ t(lang, Msg::NetUptime) }</dt>
                <dd>{ s.uptime_s.map_or_else(|| not.to_owned(), uptime) }</dd>
                if let Some(o) = &s.optical {
                    <dt>{ t(lang, Msg::NetOptical) }</dt>
                    <dd class="net-optical">
                        <span class={classes!("pill", level_class(o.rx_level))} id="net-rx">
                            { "RX " }{ dbm(lang, o.rx_dbm) }{ " · " }{ level_word(lang, o.rx_level) }
                        </span>
                        { " " }
                        <span class={classes!("pill", level_class(o.tx_level))}>
                            { "TX " }{ dbm(lang, o.tx_dbm) }{ " · " }{ level_word(lang, o.tx_level) }
                        </span>
                    </dd>
                }
                <dt>{ t(lang, Msg::NetWan) }</dt>
                <dd>{ if up_wan.is_empty() { t(lang, Msg::NetWanDown).to_owned() } else { up_wan.join(" · ") } }</dd>
            </dl>
            if !s.radios.is_empty() {
                <h4>{ "Wi-Fi" }</h4>
                <ul class="net-wifi">{ for s.radios.iter().map(|r| html! {
                    <li>
                        <strong>{ r.band.clone().unwrap_or_else(|| not.to_owned()) }</strong>
                        if let Some(c) = r.channel { { " · ch " }{ c } }
                        { " : " }
                        { r.ssids.iter().filter(|x| !x.backhaul && x.enabled != Some(false)).map(|x| format!(
                            "{} ({})",
                            x.name.clone().unwrap_or_else(|| not.to_owned()),
                            x.clients.map_or_else(|| not.to_owned(), |c| c.to_string())
                        )).collect::<Vec<_>>().join(", ") }
                    </li>
                }) }</ul>
            }
            <h4>{ t(lang, Msg::NetHosts) }{ format!(" ({})", s.host_count) }</h4>
            { for s.hosts.iter().map(|g| html! {
                <div class="net-node">
                    <p><strong>{ g.node_name.clone().or_else(|| g.node.clone()).unwrap_or_else(|| t(lang, Msg::NetGateway).to_owned()) }</strong></p>
                    <ul class="net-hosts">{ for g.hosts.iter().map(|h| html! {
                        <li class={classes!((h.active == Some(false)).then_some("inactive"))}>
                            { h.name.clone().or_else(|| h.mac.clone()).unwrap_or_else(|| not.to_owned()) }
                            { match h.link { Link::Wifi => " · Wi-Fi", Link::Ethernet => " · Ethernet", Link::Unknown => "" } }
                            if let Some(b) = &h.band { { " " }{ b } }
                            if let Some(sig) = h.signal_dbm { { " · " }{ sig }{ " dBm" } }
                            if let Some(sp) = h.speed_mbps { { " · " }{ format!("{sp:.0}") }{ " Mbit/s" } }
                        </li>
                    }) }</ul>
                </div>
            }) }
        </>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_in_words() {
        assert_eq!(uptime(420), "7 min");
        assert_eq!(uptime(15_687), "4 h 21 min");
        assert_eq!(uptime(213_138), "2 j 11 h");
    }
}
