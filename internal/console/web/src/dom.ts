// A few DOM helpers: the console is small enough not to need a framework.

type Child = Node | string;

/** el creates an element with attributes and children. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** clear empties an element and returns it. */
export function clear<T extends HTMLElement>(e: T): T {
  e.replaceChildren();
  return e;
}
