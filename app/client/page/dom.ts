/** The element matching `selector`; a missing one is a bug in the page, so it throws. */
export function $(selector: string, root: ParentNode = document): HTMLElement {
  const found = root.querySelector<HTMLElement>(selector);
  if (!found) throw new Error(`missing element ${selector}`);
  return found;
}

type Props = { className?: string; title?: string; dateTime?: string; dataset?: Record<string, string> };

/** Creates an element; children given as strings become text nodes, never HTML. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  children: (Node | string)[] = [],
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.title) node.title = props.title;
  if (props.dateTime && node instanceof HTMLTimeElement) node.dateTime = props.dateTime;
  for (const [k, v] of Object.entries(props.dataset ?? {})) node.dataset[k] = v;
  node.append(...children);
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

export function formatTime(ts: number): string {
  return timeFormat.format(new Date(ts));
}
