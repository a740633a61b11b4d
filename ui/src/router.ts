// Hash routes, so the server serves one index.html: #/runs/PROJECT?where=&sort=, #/run/ID, #/compare/ID,ID, #/login.

export type Page = "runs" | "run" | "compare" | "login";

export interface Route {
  page: Page;
  arg: string | null;
  query: URLSearchParams;
}

export function routeHref(page: Page, arg?: string): string {
  return `#/${page}${arg ? `/${encodeURIComponent(arg)}` : ""}`;
}

export function parseRoute(hash: string): Route {
  const [path, search] = hash.replace(/^#\/?/, "").split("?", 2);
  const [page, ...rest] = path.split("/");
  const known: Page[] = ["runs", "run", "compare", "login"];
  return {
    page: known.includes(page as Page) ? (page as Page) : "runs",
    arg: rest.length && rest.join("/") ? decodeURIComponent(rest.join("/")) : null,
    query: new URLSearchParams(search ?? ""),
  };
}

/** Go to a route (replace: without a new history entry). */
export function go(href: string, replace = false): void {
  if (replace) {
    history.replaceState(null, "", href);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = href.slice(1);
  }
}
