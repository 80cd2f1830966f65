// CodeMirror 6 with Python or SQL, 4-space indentation, Ctrl+Entrée to run. The editor lives in
// a shadow root: there CodeMirror's styles go through adoptedStyleSheets, which the page's
// Content-Security-Policy (no inline <style>) allows.
import { EditorView, basicSetup } from "codemirror";
import { keymap } from "@codemirror/view";
import { indentUnit } from "@codemirror/language";
import { indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { sql, SQLite } from "@codemirror/lang-sql";

const theme = EditorView.theme({
  "&": { minHeight: "10rem", maxHeight: "60vh", backgroundColor: "#fff", fontSize: "15px" },
  ".cm-scroller": { fontFamily: 'ui-monospace, "Cascadia Code", "DejaVu Sans Mono", monospace', lineHeight: "1.5" },
  ".cm-content": { minHeight: "10rem" },
  "&.cm-focused": { outline: "3px solid #f5a623" },
});

export function editor(host, { doc, language, onChange, onRun }) {
  const root = host.shadowRoot || host.attachShadow({ mode: "open" });
  return new EditorView({
    doc,
    parent: root,
    root,
    extensions: [
      basicSetup,
      theme,
      keymap.of([
        { key: "Mod-Enter", run: () => (onRun?.(), true) },
        indentWithTab,
      ]),
      indentUnit.of("    "),
      language === "sql" ? sql({ dialect: SQLite }) : python(),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) onChange?.(u.state.doc.toString());
      }),
      EditorView.contentAttributes.of({ "aria-label": language === "sql" ? "Requête SQL" : "Code Python" }),
    ],
  });
}
