/** The page's stylesheet (served as /assets/app.css; kept in TypeScript so it ships in dist/). */
export const STYLE = String.raw`
:root{
  --bg:#f4f5f7;--card:#fff;--border:#e1e4ea;--text:#1d2330;--muted:#667085;--accent:#2563eb;
  --green:#12a150;--amber:#d97706;--red:#d92d20;--grey:#98a2b3;--header:#111827;
  --mono:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;
}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Ubuntu,sans-serif}
code,.mono{font-family:var(--mono);font-size:12.5px}
a{color:var(--accent);text-decoration:none}
a:hover{text-decoration:underline}
.muted{color:var(--muted)}
.small{font-size:12px;font-weight:400}
.error{color:var(--red)}
.ok{color:var(--green);font-weight:600}
.top{display:flex;align-items:center;gap:24px;background:var(--header);color:#e5e7eb;padding:0 24px;height:48px}
.brand{font-weight:700;letter-spacing:.2px;white-space:nowrap}
.logo{color:#60a5fa}
nav{display:flex;gap:4px;flex:1}
.tab{color:#cbd5e1;padding:6px 12px;border-radius:6px;font-size:13px}
.tab:hover{background:#1f2937;text-decoration:none}
.tab.current{background:#374151;color:#fff;font-weight:600}
.right{display:flex;align-items:center;gap:12px}
.inline{display:inline;margin:0}
.live{font-size:12px;padding:2px 10px;border-radius:999px;background:#374151;color:#cbd5e1}
.live::before{content:"";display:inline-block;width:7px;height:7px;border-radius:50%;margin-right:6px;background:var(--grey);vertical-align:1px}
.live.on::before{background:#22c55e}
.live.off::before{background:#f59e0b}
main{max-width:1180px;margin:0 auto;padding:20px 24px 80px}
.title-row{display:flex;align-items:baseline;gap:16px;flex-wrap:wrap;margin-bottom:12px}
h1{font-size:20px;margin:0;letter-spacing:.3px;text-transform:uppercase}
h2{font-size:13px;margin:0 0 12px;text-transform:uppercase;letter-spacing:.6px;color:#344054}
.repo{margin:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;max-width:100%}
.card{background:var(--card);border:1px solid var(--border);border-radius:10px;padding:16px 18px;margin-bottom:16px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.columns{display:grid;grid-template-columns:minmax(0,2fr) minmax(0,3fr);gap:16px}
.columns .card{margin-bottom:16px}
@media (max-width:900px){.columns{grid-template-columns:minmax(0,1fr)}}
.control-row{display:flex;align-items:center;gap:10px;flex-wrap:wrap}
.control-row label{font-weight:600}
select{font:inherit;padding:5px 8px;border:1px solid #c9ced6;border-radius:6px;background:#fff;min-width:64px}
.btn{white-space:nowrap;font:inherit;font-weight:600;border:1px solid #c9ced6;background:#fff;color:var(--text);padding:6px 14px;border-radius:6px;cursor:pointer}
.btn:hover:not(:disabled){background:#f2f4f7}
.btn:disabled{opacity:.5;cursor:not-allowed}
.btn-primary{background:var(--accent);border-color:var(--accent);color:#fff}
.btn-primary:hover:not(:disabled){background:#1d4ed8}
.btn-danger{color:var(--red);border-color:#fda29b}
.btn-danger:hover:not(:disabled){background:#fef3f2}
.btn-small{padding:3px 10px;font-size:12.5px}
.btn-ghost{background:transparent;color:#cbd5e1;border-color:#4b5563;padding:3px 10px;font-size:12.5px}
.control-msg{font-size:13px;color:var(--muted)}
.control-msg.error{color:var(--red)}
.summary{margin-top:10px;font-size:13px}
.summary p{margin:0 0 4px}
.activity-log{list-style:none;margin:6px 0 0;padding:0;color:var(--muted);font-size:12.5px}
.activity-log li{padding:1px 0}
.warning{background:#fffaeb;border:1px solid #fedf89;color:#93370d;padding:6px 10px;border-radius:6px;margin:6px 0 0}
table.grid{width:100%;border-collapse:collapse}
.grid th{text-align:left;font-size:11.5px;text-transform:uppercase;letter-spacing:.5px;color:var(--muted);font-weight:600;padding:6px 8px;border-bottom:1px solid var(--border)}
.grid td{padding:8px;border-bottom:1px solid #f0f1f4;vertical-align:middle}
.grid tr:last-child td{border-bottom:0}
.agents td.state{white-space:nowrap;width:110px}
.agents td.time{white-space:nowrap;width:90px}
.agents td.runtime{font-size:12.5px}
.agents td.actions{text-align:right;width:100px}
.agents td.activity{max-width:420px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.state-label{font-size:12px;color:var(--muted)}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:8px;vertical-align:-1px;border:2px solid var(--grey)}
.dot-working{background:var(--green);border-color:var(--green)}
.dot-idle{background:transparent;border-color:var(--grey)}
.dot-starting,.dot-stopping{background:var(--amber);border-color:var(--amber);animation:pulse 1.2s ease-in-out infinite}
.dot-crashed{background:var(--red);border-color:var(--red)}
@keyframes pulse{50%{opacity:.35}}
.num{font-family:var(--mono);font-weight:600;color:#344054;margin-right:4px}
.title{color:var(--text)}
.badge{display:inline-block;font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.4px;padding:1px 8px;border-radius:999px;margin-right:8px;border:1px solid transparent;vertical-align:1px}
.p-urgent{background:#fef3f2;color:#b42318;border-color:#fecdca}
.p-high{background:#fffaeb;color:#b54708;border-color:#fedf89}
.p-medium{background:#eff8ff;color:#175cd3;border-color:#b2ddff}
.p-low{background:#f2f4f7;color:#475467;border-color:#e4e7ec}
.s-done{background:#ecfdf3;color:#027a48;border-color:#abefc6}
.s-failed{background:#fef3f2;color:#b42318;border-color:#fecdca}
.ro{background:#f2f4f7;color:#475467;border-color:#d0d5dd}
.queue{list-style:none;margin:0;padding:0;max-height:420px;overflow:auto}
.queue li{display:flex;align-items:center;padding:6px 2px;border-bottom:1px solid #f0f1f4;white-space:nowrap;overflow:hidden}
.queue li:last-child{border-bottom:0}
.queue .title{overflow:hidden;text-overflow:ellipsis}
.queue .pos{color:var(--muted);font-family:var(--mono);font-size:11.5px;width:26px;flex:none}
.more{margin:8px 0 0;font-size:12.5px}
.results td{font-size:13px}
.results td.mono{white-space:nowrap}
.empty{color:var(--muted);margin:4px 0;font-size:13px}
.resources{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px 24px;margin:0}
.resources .wide{grid-column:1/-1}
.resources dt{font-size:11.5px;text-transform:uppercase;letter-spacing:.5px;color:var(--muted);font-weight:600}
.resources dd{margin:2px 0 0;font-size:14px}
meter{width:120px;max-width:40%;height:10px;vertical-align:-1px;margin-left:6px}
.visually-hidden{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}
.scroll-x{overflow-x:auto;max-width:100%}
.agents td.env,.agents td.resources-cell{font-size:12.5px}
.agents .label{color:var(--muted);font-size:11.5px}
.guide{background:#eff8ff;border:1px solid #b2ddff;border-radius:8px;padding:10px 14px;color:#1d2939}
.guide p{margin:0 0 6px}.guide ol{margin:0;padding-left:20px}.guide li{margin:2px 0}
.guide code{overflow-wrap:anywhere}
code{overflow-wrap:anywhere}
/* Phones and narrow windows (360 px up): nothing wider than the screen. */
@media (max-width:760px){
  .top{flex-wrap:wrap;height:auto;padding:6px 12px;gap:4px 12px}
  nav{order:3;flex-basis:100%;flex-wrap:wrap}
  .right{margin-left:auto}
  main{padding:12px 10px 80px}
  .card{padding:12px}
  .title-row{display:block}
  .repo{white-space:normal;overflow-wrap:anywhere}
  .resources{grid-template-columns:repeat(2,minmax(0,1fr))}
  table.agents,.agents thead,.agents tbody,.agents tr,.agents td{display:block;width:auto}
  .agents thead{display:none}
  .agents tr{border:1px solid var(--border);border-radius:8px;padding:6px 8px;margin-bottom:10px}
  .agents td{border:0;padding:3px 0}
  .agents td[data-label]::before{content:attr(data-label);display:inline-block;min-width:92px;color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.4px}
  .agents td.state,.agents td.time,.agents td.actions{width:auto;text-align:left}
  .agents td.activity{max-width:none;white-space:normal}
  .queue li{white-space:normal}
}
.log-panel{position:fixed;left:0;right:0;bottom:0;height:42vh;background:#0b1020;color:#d1d5db;border-top:3px solid var(--accent);display:flex;flex-direction:column;z-index:10;box-shadow:0 -8px 24px rgba(0,0,0,.25)}
.log-panel[hidden]{display:none}
.log-head{display:flex;align-items:center;gap:14px;padding:8px 16px;background:#111827;color:#f3f4f6}
.log-heading{font-size:14px;margin:0;text-transform:none;letter-spacing:0;color:#f3f4f6}
.log-head .btn{margin-left:auto}
.log-lines{flex:1;margin:0;padding:10px 16px;overflow:auto;font-family:var(--mono);font-size:12.5px;line-height:1.45;white-space:pre-wrap;word-break:break-word}
`;
