// The console's entry: sign-in, role-aware navigation and a hash router over the screens.

import { get, signIn, signOut, token } from "./api.js";
import { field, go, h, replace } from "./dom.js";
import { adminScreen } from "./admin.js";
import { campaignScreen, campaignsScreen } from "./client.js";
import { queueScreen, reviewScreen, stopShortcuts } from "./reviewer.js";

const main = document.getElementById("main");
let me = null;

const HOME = { reviewer: "#/queue", admin: "#/queue", client: "#/campaigns" };
const LINKS = {
  reviewer: [["#/queue", "Review queue"]],
  admin: [["#/queue", "Review queue"], ["#/admin", "Administration"]],
  client: [["#/campaigns", "Campaigns"]],
};

function renderNav() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!me) {
    replace(nav);
    replace(who);
    return;
  }
  const current = location.hash.split("/").slice(0, 2).join("/");
  replace(nav, h("ul", {}, (LINKS[me.role] ?? []).map(([href, text]) => h("li", {},
    h("a", { href, "aria-current": current === href ? "page" : null }, text)))));
  replace(who,
    h("span", {}, `${me.display_name} (${me.role})`),
    h("button", { type: "button", class: "secondary", onclick: () => { signOut(); me = null; go("#/login"); } }, "Sign out"));
}

function loginScreen() {
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "login", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await signIn(email.value, password.value);
      me = await get("/v1/me");
      go(HOME[me.role] ?? "#/");
    } catch (exc) {
      error.textContent = exc.status === 401 ? "Wrong e-mail or password." : exc.message;
    }
  } },
  h("h1", { tabindex: "-1" }, "Sign in"),
  field("email", "E-mail", email),
  field("password", "Password", password),
  h("button", { type: "submit" }, "Sign in"),
  error);
  replace(main, form);
  email.focus();
}

async function route() {
  stopShortcuts();
  if (!token()) {
    me = null;
    renderNav();
    return loginScreen();
  }
  if (!me) {
    try {
      me = await get("/v1/me");
    } catch {
      signOut();
      return route();
    }
  }
  renderNav();
  const [, screen, id] = location.hash.split("/");
  const role = me.role;
  const reviews = role === "reviewer" || role === "admin";
  try {
    if (screen === "queue" && reviews) await queueScreen(main);
    else if (screen === "review" && reviews && id) await reviewScreen(main, id);
    else if (screen === "campaigns" && role === "client" && id) await campaignScreen(main, id);
    else if (screen === "campaigns" && role === "client") await campaignsScreen(main);
    else if (screen === "admin" && role === "admin") await adminScreen(main, me);
    else if (HOME[role]) {
      location.hash = HOME[role];
      return;
    } else {
      replace(main, h("h1", { tabindex: "-1" }, "Nothing here for this account"),
        h("p", {}, "The console is for reviewers, clients and admins; workers use the mobile app."));
    }
  } catch (exc) {
    replace(main, h("h1", { tabindex: "-1" }, "Something went wrong"), h("p", { class: "error", role: "alert" }, exc.message));
  }
  main.querySelector("h1")?.focus();
}

window.addEventListener("hashchange", route);
window.addEventListener("terrain:signed-out", () => { me = null; go("#/login"); });
route();
