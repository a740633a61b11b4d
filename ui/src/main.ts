import "./style.css";
import { ApiError, currentSession, logIn, logOut, type Session } from "./api";
import { clearCharts } from "./chart";
import { comparePage } from "./compare";
import { errorBox, h } from "./dom";
import { go, parseRoute, routeHref } from "./router";
import { runPage } from "./run";
import { runsPage } from "./runs";

const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
const who = document.getElementById("who") as HTMLElement;
let session: Session | null = null;

function renderHeader(): void {
  nav.replaceChildren();
  who.replaceChildren();
  if (!session) return;
  nav.append(h("a", { href: routeHref("runs") }, "Runs"));
  const out = h("button", { type: "button", class: "link", id: "logout" }, "Log out");
  out.addEventListener("click", async () => {
    await logOut().catch(() => undefined);
    session = null;
    renderHeader();
    go(routeHref("login"));
  });
  who.append(h("span", {}, session.user), " ", out);
}

function loginPage(message?: unknown): void {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const slot = h("div", {}, message ? errorBox(message) : null);
  const form = h(
    "form",
    { class: "login", id: "login-form" },
    h("label", { for: "token" }, "API token"),
    input,
    h("small", { class: "muted" }, "A token from your server's admin (striate server token USER) or from POST /api/v1/tokens. The page keeps only a session cookie, never the token."),
    h("button", { type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      session = await logIn(input.value.trim());
      input.value = "";
      renderHeader();
      go(routeHref("runs"));
    } catch (error) {
      slot.replaceChildren(errorBox(error));
      input.focus();
    }
  });
  main.replaceChildren(h("h1", {}, "Log in to striate"), slot, form);
  input.focus();
}

async function render(): Promise<void> {
  const route = parseRoute(location.hash);
  clearCharts();
  if (!session || route.page === "login") {
    if (session && route.page === "login") return go(routeHref("runs"), true);
    loginPage();
    return;
  }
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    if (route.page === "run" && route.arg) await runPage(main, route.arg);
    else if (route.page === "compare") await comparePage(main, route.arg, route.query);
    else await runsPage(main, route.arg, route.query);
    document.title = `${main.querySelector("h1")?.textContent ?? "striate"} · striate`;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      session = null;
      renderHeader();
      loginPage(error);
      return;
    }
    main.replaceChildren(h("h1", {}, "Something went wrong"), errorBox(error));
  }
}

async function start(): Promise<void> {
  window.addEventListener("hashchange", () => void render().then(() => main.focus({ preventScroll: true })));
  // `striate ui` prints http://127.0.0.1:PORT/?token=...: trade the token for a session cookie at once
  // and take it out of the address bar (and the history).
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
    try {
      session = await logIn(token);
    } catch (error) {
      renderHeader();
      loginPage(error);
      return;
    }
  } else {
    try {
      session = await currentSession();
    } catch (error) {
      main.replaceChildren(errorBox(error));
      return;
    }
  }
  renderHeader();
  await render();
  (window as unknown as { striate: { timings: Record<string, number> } }).striate.timings.startMs = performance.now();
}

void start();
