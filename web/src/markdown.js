// Markdown from the course files, rendered by marked and sanitised by DOMPurify before it is
// inserted: the only HTML the app ever inserts.
import { marked } from "marked";
import DOMPurify from "dompurify";

export function markdown(text) {
  const div = document.createElement("div");
  div.className = "md";
  div.innerHTML = DOMPurify.sanitize(marked.parse(text || "", { async: false }), {
    FORBID_TAGS: ["style", "form", "input"],
    FORBID_ATTR: ["style"],
  });
  return div;
}
