// CodeMirror 6 as a Preact component: Python or SQL, editable (line numbers,
// highlighting, bracket matching, search, Tab indents: Escape then Tab leaves the
// editor) or read-only (still focusable, selectable and searchable).
import { useEffect, useRef } from "preact/hooks";
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  bracketMatching,
  defaultHighlightStyle,
  foldGutter,
  foldKeymap,
  indentOnInput,
  syntaxHighlighting,
} from "@codemirror/language";
import { highlightSelectionMatches, searchKeymap } from "@codemirror/search";
import { python } from "@codemirror/lang-python";
import { sql } from "@codemirror/lang-sql";
import { Compartment, EditorState } from "@codemirror/state";
import {
  EditorView,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from "@codemirror/view";

// The page's CSP allows the editor's style elements only with the nonce it was served with.
const nonce = document.querySelector('meta[name="style-nonce"]')?.content || "";

// CodeMirror's basicSetup, less what a form field does not need (multiple
// selections, rectangular selection, drop cursor, lint); completion only for SQL,
// where it offers the caller's tables and columns.
function editing(completion) {
  return [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    foldGutter(),
    drawSelection(),
    indentOnInput(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    bracketMatching(),
    closeBrackets(),
    completion ? autocompletion() : [],
    highlightActiveLine(),
    highlightSelectionMatches(),
    keymap.of([
      ...closeBracketsKeymap,
      ...defaultKeymap,
      ...searchKeymap,
      ...historyKeymap,
      ...foldKeymap,
      ...completionKeymap,
      indentWithTab,
    ]),
  ];
}

const viewer = [
  lineNumbers(),
  highlightSpecialChars(),
  syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
  highlightSelectionMatches(),
  keymap.of([...defaultKeymap, ...searchKeymap]),
  EditorState.readOnly.of(true),
];

function language(name, schema) {
  if (name === "sql") return sql({ schema: schema || {}, upperCaseKeywords: true });
  return python();
}

// The editor owns its text: ``value`` is read when it is created and whenever
// ``revision`` changes (the owner replacing the text), never on the owner's
// re-renders, so an echo of an edit can never overwrite a later one.
export function CodeEditor({
  value,
  revision = 0,
  onChange,
  lang = "python",
  readOnly = false,
  label,
  schema,
  onSubmit,
  minLines = 8,
}) {
  const host = useRef(null);
  const view = useRef(null);
  const handlers = useRef({});
  handlers.current = { onChange, onSubmit };
  const languageSlot = useRef(new Compartment());

  useEffect(() => {
    const submit = keymap.of([
      { key: "Mod-Enter", run: () => (handlers.current.onSubmit ? (handlers.current.onSubmit(), true) : false) },
    ]);
    const extensions = [
      readOnly ? viewer : [submit, editing(lang === "sql")],
      languageSlot.current.of(language(lang, schema)),
      EditorView.cspNonce.of(nonce),
      EditorView.contentAttributes.of({ "aria-label": label || "code" }),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) handlers.current.onChange?.(u.state.doc.toString());
      }),
    ];
    view.current = new EditorView({
      parent: host.current,
      state: EditorState.create({ doc: value || "", extensions }),
    });
    return () => view.current.destroy();
  }, [readOnly, lang]);

  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const v = view.current;
    v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value || "" } });
  }, [revision]);

  useEffect(() => {
    view.current?.dispatch({ effects: languageSlot.current.reconfigure(language(lang, schema)) });
  }, [schema]);

  return <div class={readOnly ? "code viewer" : "code editor"} ref={host} style={{ "--min-lines": minLines }} />;
}
