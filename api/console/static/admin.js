// Admins: suspensions and their appeals, tasks hidden by reports, and the payout run.

import { downloadFrom, get, post } from "./api.js";
import { field, go, h, label, money, notify, replace, table, when } from "./dom.js";

function decisionForm(prefix, title, outcomes, submit) {
  const outcome = h("select", { id: `${prefix}-outcome`, name: "outcome" },
    outcomes.map(([value, text]) => h("option", { value }, text)));
  const comment = h("textarea", { id: `${prefix}-comment`, name: "comment", rows: 2, maxlength: 4000 });
  const error = h("p", { class: "error", role: "alert" });
  return h("form", { class: "inline-decision", "aria-label": title, onsubmit: async (event) => {
    event.preventDefault();
    if (!comment.value.trim()) {
      error.textContent = "Say why in a comment: the people concerned read it.";
      comment.focus();
      return;
    }
    try {
      await submit(outcome.value, comment.value.trim());
      go("#/admin");
    } catch (exc) {
      error.textContent = exc.message;
    }
  } },
  field(`${prefix}-outcome`, "Decision", outcome),
  field(`${prefix}-comment`, "Comment (required)", comment),
  h("button", { type: "submit" }, "Decide"),
  error);
}

function suspensionsSection(suspensions, me) {
  const rows = suspensions.map((s) => h("tr", {},
    h("th", { scope: "row" }, h("code", {}, s.user_id)),
    h("td", {}, h("code", {}, s.reason_code), ` ${s.reason ?? ""}`, h("br"), s.message),
    h("td", {}, when(s.created_at)),
    h("td", {}, s.appealed_at
      ? [h("p", {}, `Appealed ${when(s.appealed_at)}: ${s.appeal_message}`),
        s.appeal_outcome ? h("p", {}, `Decided: ${s.appeal_outcome} (${s.appeal_comment})`) : null]
      : "Not appealed"),
    h("td", {}, s.appealed_at && !s.appeal_outcome
      ? decisionForm(`suspension-${s.id}`, `Decide the appeal of suspension ${s.id}`, [["lift", "Lift the suspension"], ["uphold", "Uphold it"]],
        async (outcome, comment) => {
          await post(`/v1/suspensions/${s.id}/decision`, { outcome, comment });
          notify(`Suspension appeal decided: ${outcome}.`, "success");
        })
      : "—")));
  return h("section", { class: "panel", "aria-labelledby": "suspensions-title" },
    h("h2", { id: "suspensions-title" }, "Suspensions in force"),
    h("p", { class: "hint" }, `An appeal is decided by another admin than the one who suspended (you are ${me.display_name}).`),
    suspensions.length
      ? table("Suspensions, appealed and undecided first", ["Worker", "Reason", "Since", "Appeal", "Decision"], rows, "suspensions")
      : h("p", {}, "No suspension in force."));
}

function reportsSection(reported) {
  const rows = reported.map((t) => h("tr", {},
    h("th", { scope: "row" }, t.store_name, h("br"), h("code", { class: "hint" }, t.task_id)),
    h("td", {}, label(t.status), t.severe ? h("strong", {}, " · severe: decide now") : ""),
    h("td", {}, h("ul", {}, t.reports.map((r) => h("li", {}, h("code", {}, r.reason_code), `: ${r.message} (${when(r.created_at)})`)))),
    h("td", {}, decisionForm(`task-${t.task_id}`, `Decide the reports on the task at ${t.store_name}`, [["restore", "Restore the task"], ["remove", "Remove it"]],
      async (outcome, comment) => {
        await post(`/v1/tasks/${t.task_id}/reports/decision`, { outcome, comment });
        notify(`Task ${outcome === "restore" ? "restored" : "removed"}.`, "success");
      }))));
  return h("section", { class: "panel", "aria-labelledby": "reports-title" },
    h("h2", { id: "reports-title" }, "Reported tasks awaiting a decision"),
    h("p", { class: "hint" }, "Tasks hidden by reports, and tasks reported as unsafe or illegal (one report is enough), severe first."),
    reported.length
      ? table("Reported tasks awaiting a decision", ["Task", "Status", "Reports", "Decision"], rows, "task-reports")
      : h("p", {}, "No reported task awaits a decision."));
}

function payoutSection() {
  const result = h("div", { "aria-live": "polite" });
  const run = async () => {
    try {
      const payout = await post("/v1/payouts");
      replace(result,
        h("p", {}, `Payout run ${payout.id} at ${when(payout.created_at)}: ${payout.lines.length} transfer${payout.lines.length === 1 ? "" : "s"}.`),
        table("Transfers to make", ["Worker", "Amount"], payout.lines.map((line) => h("tr", {},
          h("th", { scope: "row" }, h("code", {}, line.worker_id)), h("td", {}, money(line.amount_cents, line.currency)))), "payout"),
        h("button", { type: "button", class: "secondary", onclick: () => downloadFrom(payout.csv_url, `payout-${payout.id}.csv`) }, "Download the transfers (CSV)"));
    } catch (exc) {
      replace(result, h("p", { class: exc.code === "nothing_to_pay" ? "" : "error", role: "alert" }, exc.message));
    }
  };
  return h("section", { class: "panel", "aria-labelledby": "payout-title" },
    h("h2", { id: "payout-title" }, "Payout run"),
    h("p", {}, "Pays every available balance in one transaction; each becomes a payout entry in the worker's ledger."),
    h("button", { type: "button", id: "run-payout", onclick: run }, "Run the payout"),
    result);
}

export async function adminScreen(main, me) {
  const [suspensions, reported] = await Promise.all([get("/v1/suspensions"), get("/v1/task-reports")]);
  replace(main,
    h("h1", { tabindex: "-1" }, "Administration"),
    suspensionsSection(suspensions, me),
    reportsSection(reported),
    payoutSection());
}
