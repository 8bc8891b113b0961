/* src/trace/export_html.c - a self-contained HTML report: Gantt chart, utilisation, table of
 * functions, critical path and errors, with no network access and no external script.
 *
 * Design: the charts are SVG written here, so the page shows everything without script; the
 * inline script only adds a tooltip, zoom and pan of the Gantt chart, table sorting and
 * highlighting, and finally marks <body data-ok="1"> (a test checks it ran without error).
 * Every run is one <rect class="bar"> carrying data-task, data-thread, data-fn, data-s (start,
 * ns) and data-d (length, ns). Past AGG_MIN_RUNS runs (1e5 to 1e6 tasks) runs narrower than
 * a pixel of the unzoomed chart are summed per worker and pixel into one <rect class="agg">
 * whose opacity is the busy share of that pixel (data-n runs, data-d busy ns), parks narrower
 * than a pixel are left out, and the errors table groups failures by root cause: the file
 * stays a few MB for a million tasks. Past MAX_BARS wider runs the chart keeps the first.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

#define MAX_BARS 100000
#define AGG_MIN_RUNS 20000
#define MAX_ERRORS 200
#define UTIL_BINS 300
#define CHART_L 96   /* left margin of the charts (row labels) */
#define CHART_W 1240 /* width of the time axis */
#define ROW_H 26
#define BAR_H 18
#define AXIS_H 24

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948",
                                      "#b07aa1", "#ff9da7", "#9c755f", "#86bcb6", "#8cd17d",
                                      "#a0cbe8", "#ffbe7d", "#bab0ac", "#d4a6c8"};
#define NPALETTE (sizeof palette / sizeof palette[0])

static const char *fn_color(int fn) { return palette[(size_t)fn % NPALETTE]; }

/* A JSON string safe inside <script>. */
static void put_js(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == '<' || c == '>' || c == '&')
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* A "nice" tick step (1, 2 or 5 x 10^k) for about `n` ticks over `span`. */
static int64_t tick_step(int64_t span, int n)
{
    double raw = (double)(span > 0 ? span : 1) / n;
    double p = pow(10.0, floor(log10(raw)));
    double m = raw / p;
    double step = (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
    return step < 1 ? 1 : (int64_t)step;
}

/* A tick label: "2 ms", "2.5 ms" (fmt_dur without the trailing zeros). */
static const char *tick_label(int64_t ns, char *buf)
{
    if (ns == 0)
        return "0";
    dagger__trace_fmt_dur(ns, buf);
    char *sp = strchr(buf, ' '), *dot = strchr(buf, '.');
    if (sp && dot && dot < sp) {
        char *e = sp;
        while (e[-1] == '0')
            e--;
        if (e[-1] == '.')
            e--;
        memmove(e, sp, strlen(sp) + 1);
    }
    return buf;
}

static void axis(FILE *f, int64_t wall, double y0, double y1, int labels_below)
{
    int64_t step = tick_step(wall, 10);
    char a[32];
    fputs("<g class=\"axis\">", f);
    /* t + step is never computed past wall: a wall near INT64_MAX must not wrap around. */
    for (int64_t t = 0; wall >= 0; t += step) {
        double x = CHART_L + (double)t / (double)(wall ? wall : 1) * CHART_W;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, y0, x, y1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>", x,
                labels_below ? y1 + 14 : y0 - 6, tick_label(t, a));
        if (t > wall - step)
            break;
    }
    fputs("</g>\n", f);
}

static void card(FILE *f, const char *label, const char *value, const char *cls)
{
    fprintf(f, "<div class=\"card %s\"><div class=\"v\">", cls);
    dagger__trace_put_html(f, value);
    fprintf(f, "</div><div class=\"l\">%s</div></div>\n", label);
}

static const char CSS[] =
    ":root{--bg:#f6f7fb;--fg:#1f2933;--muted:#65748b;--card:#fff;--line:#e3e8ef;"
    "--accent:#3c64b1;--bad:#e53e3e;--cp:#dd6b20}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"
    "'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\n"
    "header{background:linear-gradient(120deg,#1e3a6e,#3c64b1);color:#fff;padding:22px 32px}\n"
    "header h1{margin:0;font-size:22px;font-weight:600;letter-spacing:.2px}\n"
    "header p{margin:4px 0 0;opacity:.85}\n"
    "main{max-width:1440px;margin:0 auto;padding:20px 32px 40px}\n"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;"
    "margin-bottom:20px}\n"
    ".card{background:var(--card);border:1px solid var(--line);border-radius:10px;"
    "padding:12px 16px;box-shadow:0 1px 2px rgba(16,24,40,.04)}\n"
    ".card .v{font-size:20px;font-weight:600;white-space:nowrap}\n"
    ".card .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.6px}\n"
    ".card.bad .v{color:var(--bad)}.card.warn .v{color:#b7791f}\n"
    "section{background:var(--card);border:1px solid var(--line);border-radius:10px;"
    "padding:16px 20px;margin-bottom:20px;box-shadow:0 1px 2px rgba(16,24,40,.04)}\n"
    "section h2{margin:0 0 10px;font-size:16px;font-weight:600}\n"
    ".hint{color:var(--muted);font-size:12px;margin:0 0 8px}\n"
    ".note{background:#fffbea;border:1px solid #f6e05e;border-radius:6px;padding:6px 10px;"
    "margin:0 0 8px;font-size:13px}\n"
    ".legend{display:flex;flex-wrap:wrap;gap:6px 14px;margin:0 0 10px;font-size:12px}\n"
    ".legend span{cursor:pointer;user-select:none;display:inline-flex;align-items:center;gap:5px}\n"
    ".legend i{width:12px;height:12px;border-radius:3px;display:inline-block}\n"
    ".legend span.off{opacity:.35}\n"
    ".chart{width:100%;overflow:hidden;border:1px solid var(--line);border-radius:8px;"
    "background:#fcfdff}\n"
    "svg{display:block;font:11px system-ui,sans-serif}\n"
    ".axis line{stroke:#e6eaf0;stroke-width:1}.axis text{fill:var(--muted)}\n"
    ".row{fill:#f1f4f9}.row.odd{fill:#f8fafc}.rowlabel{fill:#3d4b5c;font-weight:600}\n"
    ".bar{stroke:rgba(0,0,0,.18);stroke-width:.5;cursor:pointer}\n"
    ".bar:hover{stroke:#111;stroke-width:1.2}\n"
    ".bar.fail{fill:var(--bad)!important;stroke:#9b2c2c;stroke-width:1}\n"
    ".bar.cancel{fill:#cbd5e0!important}\n"
    "svg.showcp .bar.cp{stroke:var(--cp);stroke-width:2}\n"
    ".bar.dim{opacity:.12}\n"
    ".agg{pointer-events:none}\n"
    ".park{fill:url(#hatch)}\n"
    ".util path.area{fill:url(#ugrad);stroke:#3c64b1;stroke-width:1.2}\n"
    ".util .ref{stroke:#cbd2d9;stroke-dasharray:4 3}\n"
    "table{border-collapse:collapse;width:100%;font-size:13px}\n"
    "th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:right;"
    "white-space:nowrap}\n"
    "th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;"
    "letter-spacing:.4px;cursor:pointer;user-select:none;background:#fafbfd}\n"
    "th:first-child,td:first-child,td.l,th.l{text-align:left}\n"
    "td.msg{text-align:left;white-space:normal;font-family:ui-monospace,Menlo,monospace;"
    "font-size:12px;color:#9b2c2c}\n"
    "tbody tr:hover{background:#f5f8ff}\n"
    ".sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:7px}\n"
    ".share{display:inline-block;height:8px;background:#a3bffa;border-radius:4px;"
    "vertical-align:middle;margin-left:6px}\n"
    ".chain{display:flex;flex-wrap:wrap;gap:6px;align-items:center}\n"
    ".chip{border:1px solid var(--line);border-left:4px solid var(--cp);border-radius:6px;"
    "padding:3px 8px;font-size:12px;background:#fffaf5}\n"
    ".arrow{color:var(--muted)}\n"
    ".ok{color:#2f855a}\n"
    "#tip{position:fixed;pointer-events:none;background:#1f2933;color:#fff;padding:7px 10px;"
    "border-radius:6px;font-size:12px;line-height:1.4;box-shadow:0 4px 14px rgba(0,0,0,.25);"
    "display:none;z-index:9;max-width:420px}\n"
    "#tip b{font-weight:600}\n"
    "label.tog{font-size:12px;color:var(--muted);margin-left:12px}\n"
    "footer{color:var(--muted);font-size:12px;text-align:center;margin-top:8px}\n"
    "#err{display:none;color:#fff;background:var(--bad);padding:8px 32px}\n";

/* The script runs after the page is built; a failure leaves body without data-ok and shows
 * the message in #err. */
static const char JS[] =
    "(function(){\n"
    "try{\n"
    "var g=document.getElementById('gantt'),tip=document.getElementById('tip');\n"
    "var FN=JSON.parse(document.getElementById('fns-data').textContent);\n"
    "var L=+g.dataset.l,W=+g.dataset.w,WALL=+g.dataset.wall,v0=0,v1=WALL;\n"
    "function fmt(ns){ns=+ns;if(ns<1e3)return ns.toFixed(0)+' ns';if(ns<1e6)"
    "return (ns/1e3).toFixed(2)+' us';if(ns<1e9)return (ns/1e6).toFixed(2)+' ms';"
    "return (ns/1e9).toFixed(3)+' s';}\n"
    "function tick(ns){return ns==0?'0':fmt(ns).replace(/(\\.\\d*?)0+ /,'$1 ').replace('. ',' "
    "');}\n"
    "var bars=g.querySelectorAll('.bar,.park,.agg');\n"
    "function draw(){var k=W/(v1-v0);for(var i=0;i<bars.length;i++){var b=bars[i],"
    "s=+b.dataset.s,d=+b.dataset.d,x=L+(s-v0)*k,w=Math.max(d*k,.6);"
    "if(x+w<L||x>L+W){b.style.display='none';continue;}b.style.display='';"
    "if(x<L){w-=L-x;x=L;}if(x+w>L+W)w=L+W-x;b.setAttribute('x',x.toFixed(2));"
    "b.setAttribute('width',Math.max(w,.6).toFixed(2));}"
    "var ax=g.querySelector('.axis'),h=+g.dataset.h,span=v1-v0,raw=span/10,"
    "p=Math.pow(10,Math.floor(Math.log10(raw))),m=raw/p,"
    "st=(m<1.5?1:m<3.5?2:m<7.5?5:10)*p,out='';"
    "for(var t=Math.ceil(v0/st)*st;t<=v1;t+=st){var xx=L+(t-v0)*k;"
    "out+='<line x1=\"'+xx+'\" y1=\"'+(+g.dataset.top)+'\" x2=\"'+xx+'\" y2=\"'+h+'\"/>'+"
    "'<text x=\"'+xx+'\" y=\"'+(+g.dataset.top-6)+'\" text-anchor=\"middle\">'+tick(t)+'</text>';}"
    "ax.innerHTML=out;}\n"
    "g.addEventListener('wheel',function(e){e.preventDefault();var r=g.getBoundingClientRect(),"
    "sx=(e.clientX-r.left)*(g.viewBox.baseVal.width/r.width);if(sx<L)return;"
    "var c=v0+(sx-L)/W*(v1-v0),z=e.deltaY<0?0.8:1.25,n0=c-(c-v0)*z,n1=c+(v1-c)*z;"
    "if(n1-n0<50)return;v0=Math.max(0,n0);v1=Math.min(WALL,n1);draw();},{passive:false});\n"
    "var drag=null;g.addEventListener('mousedown',function(e){drag={x:e.clientX,a:v0,b:v1};});\n"
    "window.addEventListener('mouseup',function(){drag=null;});\n"
    "window.addEventListener('mousemove',function(e){if(!drag)return;var "
    "r=g.getBoundingClientRect(),"
    "dx=(e.clientX-drag.x)*(g.viewBox.baseVal.width/r.width)/W*(drag.b-drag.a);"
    "var a=drag.a-dx,b=drag.b-dx;if(a<0){b-=a;a=0;}if(b>WALL){a-=b-WALL;b=WALL;}"
    "v0=Math.max(0,a);v1=b;draw();});\n"
    "g.addEventListener('dblclick',function(){v0=0;v1=WALL;draw();});\n"
    "var ST=['finished','failed','cancelled','running'];\n"
    "g.addEventListener('mousemove',function(e){var b=e.target;if(!b.classList||"
    "!b.classList.contains('bar')){tip.style.display='none';return;}var d=b.dataset,f=FN[+d.fn];"
    "tip.innerHTML='<b></b><br>task #'+d.task+' on '+(d.thread<0?'external thread':"
    "'worker '+d.thread)+'<br>start '+fmt(d.s)+' &middot; length '+fmt(d.d)+"
    "'<br>'+ST[+d.st];tip.firstChild.textContent=f.name;"
    "tip.style.display='block';tip.style.left=Math.min(e.clientX+14,innerWidth-300)+'px';"
    "tip.style.top=(e.clientY+14)+'px';});\n"
    "g.addEventListener('mouseleave',function(){tip.style.display='none';});\n"
    "var off={};document.querySelectorAll('.legend span[data-fn]').forEach(function(s){"
    "s.addEventListener('click',function(){var k=s.dataset.fn;off[k]=!off[k];"
    "s.classList.toggle('off',off[k]);g.querySelectorAll('.bar').forEach(function(b){"
    "b.classList.toggle('dim',!!off[b.dataset.fn]);});});});\n"
    "var cp=document.getElementById('showcp');if(cp)cp.addEventListener('change',function(){"
    "g.classList.toggle('showcp',cp.checked);});\n"
    "document.querySelectorAll('table.sortable').forEach(function(t){"
    "t.querySelectorAll('th').forEach(function(th,ci){var asc=false;"
    "th.addEventListener('click',function(){var tb=t.tBodies[0],rows=[].slice.call(tb.rows);"
    "asc=!asc;rows.sort(function(a,b){var x=a.cells[ci].dataset.v,y=b.cells[ci].dataset.v;"
    "var r=(x!==undefined&&y!==undefined)?(+x)-(+y):a.cells[ci].textContent.localeCompare("
    "b.cells[ci].textContent);return asc?r:-r;});rows.forEach(function(r){tb.appendChild(r);});"
    "});});});\n"
    "draw();\n"
    "document.body.setAttribute('data-ok','1');\n"
    "}catch(e){var el=document.getElementById('err');el.style.display='block';"
    "el.textContent='report script error: '+e;}\n"
    "})();\n";

int dagger__trace_export_html(const struct dtr_model *m, FILE *f)
{
    char a[32], b[32], c[32];
    const dagger_trace_stats_t *st = &m->stats;
    int lanes = m->nthreads > 0 ? m->nthreads : 1;
    int nrows = m->nthreads + (m->has_external ? 1 : 0);
    if (nrows < 1)
        nrows = 1;
    int64_t wall = m->wall > 0 ? m->wall : 1;
    double util = 100.0 * (double)m->busy / ((double)wall * lanes);
    unsigned char *oncp = calloc(m->ntasks + 1, 1);
    if (!oncp)
        return DAGGER_ENOMEM;
    size_t ncp = 0;
    for (int64_t i = m->cp_last; i >= 0 && !oncp[i]; i = m->tasks[i].cp_prev, ncp++)
        oncp[i] = 1;

    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
          "<title>dagger trace report</title>\n<style>\n",
          f);
    fputs(CSS, f);
    fputs("</style></head>\n<body>\n<div id=\"err\"></div>\n<header><h1>dagger trace report</h1>",
          f);
    fprintf(f,
            "<p>%llu tasks on %d worker thread%s &middot; wall time %s &middot; %llu events"
            "</p>",
            (unsigned long long)st->tasks, m->nthreads, m->nthreads == 1 ? "" : "s",
            dagger__trace_fmt_dur(m->wall, a), (unsigned long long)st->events);
    if (m->snap && m->snap->topo) {
        fputs("<p class=\"hint\">", f);
        dagger__trace_put_html(f, m->snap->topo);
        fputs("</p>", f);
    }
    fputs("</header>\n<main>\n", f);

    /* Key figures. */
    fputs("<div class=\"cards\">\n", f);
    card(f, "wall time", dagger__trace_fmt_dur(m->wall, a), "");
    snprintf(b, sizeof b, "%llu", (unsigned long long)st->tasks);
    card(f, "tasks", b, "");
    snprintf(b, sizeof b, "%.1f %%", util);
    card(f, "utilisation", b, "");
    card(f, "critical path", dagger__trace_fmt_dur(m->cp_len, a), "");
    snprintf(b, sizeof b, "%.2f", m->cp_len > 0 ? (double)m->busy / (double)m->cp_len : 0.0);
    card(f, "parallelism", b, "");
    snprintf(b, sizeof b, "%llu", (unsigned long long)st->failed);
    card(f, "failed", b, st->failed ? "bad" : "");
    snprintf(b, sizeof b, "%llu / %llu", (unsigned long long)st->steals,
             (unsigned long long)st->parks);
    card(f, "steals / parks", b, "");
    if (st->moves) {
        snprintf(b, sizeof b, "%llu / %llu", (unsigned long long)st->spills,
                 (unsigned long long)st->reloads);
        card(f, "spills / reloads", b, "");
    }
    snprintf(b, sizeof b, "%llu", (unsigned long long)st->dropped);
    card(f, "dropped events", b, st->dropped ? "warn" : "");
    fputs("</div>\n", f);

    /* Gantt chart. */
    double top = AXIS_H, h = top + nrows * ROW_H + 4;
    fputs("<section><h2>Tasks per thread</h2>\n"
          "<p class=\"hint\">One bar per run of a task. Scroll to zoom, drag to pan, "
          "double-click to reset; click a function below to fade it.",
          f);
    fputs("<label class=\"tog\"><input type=\"checkbox\" id=\"showcp\"> highlight the critical "
          "path</label></p>\n",
          f);
    if (m->nruns > AGG_MIN_RUNS)
        fprintf(f,
                "<p class=\"note\">%llu runs: runs narrower than a pixel are drawn as one shaded "
                "bar per worker and pixel (darker = busier); zoom to see runs one by one.</p>\n",
                (unsigned long long)m->nruns);
    if (st->dropped)
        fprintf(f,
                "<p class=\"note\">%llu events were dropped when the trace reached its limit "
                "(DAGGER_TRACE_LIMIT); the picture is incomplete.</p>\n",
                (unsigned long long)st->dropped);
    fputs("<div class=\"legend\">", f);
    for (size_t i = 0; i < m->nfns && i < 40; i++) {
        fprintf(f, "<span data-fn=\"%zu\"><i style=\"background:%s\"></i>", i, fn_color((int)i));
        dagger__trace_put_html(f, dagger__trace_str(m, m->fns[i].name));
        fputs("</span>", f);
    }
    if (st->failed)
        fputs("<span><i style=\"background:#e53e3e\"></i>failed</span>", f);
    if (m->nparks)
        fputs("<span><i style=\"background:#d5dbe3\"></i>parked</span>", f);
    fputs("</div>\n<div class=\"chart\">", f);
    fprintf(f,
            "<svg id=\"gantt\" class=\"gantt\" width=\"100%%\" viewBox=\"0 0 %d %.0f\" "
            "data-runs=\"%llu\" data-l=\"%d\" data-w=\"%d\" data-wall=\"%lld\" data-top=\"%.0f\" "
            "data-h=\"%.0f\" xmlns=\"http://www.w3.org/2000/svg\">\n",
            CHART_L + CHART_W + 36, h, (unsigned long long)m->nruns, CHART_L, CHART_W,
            (long long)wall, top, h);
    fputs("<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
          "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#f3f5f8\"/>"
          "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#dde2e9\" stroke-width=\"1.5\"/>"
          "</pattern></defs>\n",
          f);
    for (int r = 0; r < nrows; r++) {
        int thread = r < m->nthreads ? r : -1;
        fprintf(f, "<rect class=\"row%s\" x=\"%d\" y=\"%.0f\" width=\"%d\" height=\"%d\"/>",
                r % 2 ? " odd" : "", CHART_L, top + r * ROW_H, CHART_W, ROW_H);
        if (thread >= 0)
            fprintf(f,
                    "<text class=\"rowlabel\" x=\"%d\" y=\"%.0f\" text-anchor=\"end\">worker "
                    "%d</text>\n",
                    CHART_L - 10, top + r * ROW_H + ROW_H / 2 + 4, thread);
        else
            fprintf(f,
                    "<text class=\"rowlabel\" x=\"%d\" y=\"%.0f\" text-anchor=\"end\">"
                    "external</text>\n",
                    CHART_L - 10, top + r * ROW_H + ROW_H / 2 + 4);
    }
    axis(f, wall, top, h, 0);
    double k = (double)CHART_W / (double)wall;
    int agg = m->nruns > AGG_MIN_RUNS;
    for (size_t i = 0; i < m->nparks; i++) {
        const struct dtr_span *p = &m->parks[i];
        int row = p->thread >= 0 ? p->thread : m->nthreads;
        if (row >= nrows || (agg && (p->t1 - p->t0) * k < 1.0))
            continue;
        fprintf(f,
                "<rect class=\"park\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%d\" "
                "data-s=\"%lld\" data-d=\"%lld\"/>\n",
                CHART_L + p->t0 * k, top + row * ROW_H + (ROW_H - BAR_H) / 2.0,
                fmax((p->t1 - p->t0) * k, 0.6), BAR_H, (long long)p->t0,
                (long long)(p->t1 - p->t0));
    }
    /* Sub-pixel runs of a big trace: busy ns, count and first function per (row, pixel). */
    struct px {
        double busy;
        uint32_t n;
        int fn;
    } *pxs = agg ? calloc((size_t)nrows * CHART_W, sizeof *pxs) : NULL;
    if (agg && !pxs) {
        free(oncp);
        return DAGGER_ENOMEM;
    }
    size_t nbars = 0;
    for (size_t i = 0; i < m->nruns && nbars < MAX_BARS; i++) {
        const struct dtr_run *r = &m->runs[i];
        const struct dtr_task *t = &m->tasks[r->task];
        int row = r->thread >= 0 ? r->thread : m->nthreads;
        if (agg && row < nrows && (r->t1 - r->t0) * k < 1.0) {
            int x = (int)(r->t0 * k);
            struct px *q = &pxs[(size_t)row * CHART_W + (x < 0          ? 0
                                                         : x >= CHART_W ? CHART_W - 1
                                                                        : x)];
            if (!q->n++)
                q->fn = t->fn;
            q->busy += (double)(r->t1 - r->t0);
            continue;
        }
        nbars++;
        int stc = !(t->state & DTR_ST_FINISHED) ? 3
                  : t->rc == 0                  ? 0
                  : t->rc == DAGGER_ECANCELED   ? 2
                                                : 1;
        fprintf(f,
                "<rect class=\"bar%s%s\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%d\" "
                "rx=\"2\" fill=\"%s\" data-task=\"%llu\" data-thread=\"%d\" data-fn=\"%d\" "
                "data-s=\"%lld\" data-d=\"%lld\" data-st=\"%d\"/>\n",
                stc == 1   ? " fail"
                : stc == 2 ? " cancel"
                           : "",
                oncp[r->task] ? " cp" : "", CHART_L + r->t0 * k,
                top + row * ROW_H + (ROW_H - BAR_H) / 2.0, fmax((r->t1 - r->t0) * k, 0.6), BAR_H,
                fn_color(t->fn), (unsigned long long)t->id, r->thread, t->fn, (long long)r->t0,
                (long long)(r->t1 - r->t0), stc);
    }
    for (int row = 0; agg && row < nrows; row++)
        for (int x = 0; x < CHART_W; x++) {
            const struct px *q = &pxs[(size_t)row * CHART_W + x];
            if (!q->n)
                continue;
            double op = q->busy * k; /* busy share of the pixel */
            fprintf(f,
                    "<rect class=\"agg\" x=\"%d\" y=\"%.1f\" width=\"1\" height=\"%d\" "
                    "fill=\"%s\" fill-opacity=\"%.2f\" data-s=\"%lld\" data-d=\"%lld\" "
                    "data-n=\"%u\"/>\n",
                    CHART_L + x, top + row * ROW_H + (ROW_H - BAR_H) / 2.0, BAR_H, fn_color(q->fn),
                    op < 0.15 ? 0.15
                    : op > 1  ? 1.0
                              : op,
                    (long long)(x / k), (long long)(1 / k), q->n);
        }
    free(pxs);
    fputs("</svg></div></section>\n", f);

    /* Utilisation over time. */
    {
        double bins[UTIL_BINS] = {0};
        double bw = (double)wall / UTIL_BINS;
        for (size_t i = 0; i < m->nruns; i++) {
            const struct dtr_run *r = &m->runs[i];
            if (r->thread < 0)
                continue;
            double s = (double)r->t0, e = (double)r->t1;
            /* Clamped as doubles: converting an out-of-range double to int is undefined. */
            double q0 = s / bw, q1 = e / bw;
            int b0 = q0 > 0 ? (q0 < UTIL_BINS ? (int)q0 : UTIL_BINS - 1) : 0;
            int b1 = q1 > 0 ? (q1 < UTIL_BINS ? (int)q1 : UTIL_BINS - 1) : 0;
            for (int j = b0; j <= b1; j++) {
                double lo = fmax(s, j * bw), hi = fmin(e, (j + 1) * bw);
                if (hi > lo)
                    bins[j] += hi - lo;
            }
        }
        const double UH = 150;
        double ut = 14, ub = ut + UH;
        fputs("<section><h2>Utilisation over time</h2>\n"
              "<p class=\"hint\">Share of the worker threads busy running tasks.</p>\n"
              "<div class=\"chart\">",
              f);
        fprintf(f,
                "<svg class=\"util\" width=\"100%%\" viewBox=\"0 0 %d %.0f\" "
                "xmlns=\"http://www.w3.org/2000/svg\">\n",
                CHART_L + CHART_W + 36, ub + 24);
        fputs("<defs><linearGradient id=\"ugrad\" x1=\"0\" y1=\"0\" x2=\"0\" y2=\"1\">"
              "<stop offset=\"0\" stop-color=\"#3c64b1\" stop-opacity=\".55\"/>"
              "<stop offset=\"1\" stop-color=\"#3c64b1\" stop-opacity=\".08\"/>"
              "</linearGradient></defs>\n",
              f);
        axis(f, wall, ut, ub, 1);
        for (int p = 0; p <= 100; p += 25) {
            double y = ub - UH * p / 100.0;
            fprintf(f,
                    "<line class=\"ref\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#65748b\">%d %%"
                    "</text>\n",
                    CHART_L, y, CHART_L + CHART_W, y, CHART_L - 8, y + 4, p);
        }
        fprintf(f, "<path class=\"area\" d=\"M%d %.1f", CHART_L, ub);
        for (int j = 0; j < UTIL_BINS; j++) {
            double u = bins[j] / (bw * lanes);
            if (u > 1)
                u = 1;
            double x0 = CHART_L + (double)CHART_W * j / UTIL_BINS;
            double x1 = CHART_L + (double)CHART_W * (j + 1) / UTIL_BINS;
            fprintf(f, " L%.1f %.1f L%.1f %.1f", x0, ub - UH * u, x1, ub - UH * u);
        }
        fprintf(f, " L%d %.1f Z\"/>\n</svg></div></section>\n", CHART_L + CHART_W, ub);
    }

    /* Functions. */
    fputs("<section><h2>Functions</h2>\n<table id=\"fns\" class=\"sortable\"><thead><tr>"
          "<th>function</th><th>tasks</th><th>runs</th><th>total</th><th>mean</th><th>max</th>"
          "<th>failed</th><th class=\"l\">share of busy time</th></tr></thead><tbody>\n",
          f);
    for (size_t i = 0; i < m->nfns; i++) {
        const struct dtr_fn *fn = &m->fns[i];
        int64_t mean = fn->count ? fn->total / (int64_t)fn->count : 0;
        double share = m->busy > 0 ? 100.0 * (double)fn->total / (double)m->busy : 0;
        fprintf(f, "<tr><td><span class=\"sw\" style=\"background:%s\"></span>", fn_color((int)i));
        dagger__trace_put_html(f, dagger__trace_str(m, fn->name));
        fprintf(f,
                "</td><td data-v=\"%llu\">%llu</td><td data-v=\"%llu\">%llu</td>"
                "<td data-v=\"%lld\">%s</td><td data-v=\"%lld\">%s</td>"
                "<td data-v=\"%lld\">%s</td><td data-v=\"%llu\">%llu</td>"
                "<td class=\"l\" data-v=\"%.3f\">%5.1f %%<span class=\"share\" "
                "style=\"width:%.0fpx\"></span></td></tr>\n",
                (unsigned long long)fn->count, (unsigned long long)fn->count,
                (unsigned long long)fn->runs, (unsigned long long)fn->runs, (long long)fn->total,
                dagger__trace_fmt_dur(fn->total, a), (long long)mean,
                dagger__trace_fmt_dur(mean, b), (long long)fn->max,
                dagger__trace_fmt_dur(fn->max, c), (unsigned long long)fn->failed,
                (unsigned long long)fn->failed, share, share, share * 1.6);
    }
    fputs("</tbody></table></section>\n", f);

    /* Critical path. */
    fprintf(f,
            "<section><h2>Critical path</h2>\n<p>Length <b>%s</b> over <b>%zu</b> task%s; "
            "total work %s, so at most <b>%.2f</b> threads could be kept busy on average.</p>\n",
            dagger__trace_fmt_dur(m->cp_len, a), ncp, ncp == 1 ? "" : "s",
            dagger__trace_fmt_dur(m->busy, b),
            m->cp_len > 0 ? (double)m->busy / (double)m->cp_len : 0.0);
    if (ncp) {
        int64_t *chain = malloc(ncp * sizeof *chain);
        if (chain) {
            size_t n = ncp;
            for (int64_t i = m->cp_last; i >= 0 && n > 0; i = m->tasks[i].cp_prev)
                chain[--n] = i;
            fputs("<div class=\"chain\">", f);
            for (size_t j = 0; j < ncp; j++) {
                if (ncp > 24 && j == 12) {
                    fprintf(f, "<span class=\"arrow\">&hellip; %zu more &hellip;</span>", ncp - 24);
                    j = ncp - 12;
                }
                const struct dtr_task *t = &m->tasks[chain[j]];
                fputs("<span class=\"chip\">", f);
                dagger__trace_put_html(f, dagger__trace_task_name(m, t));
                fprintf(f, " #%llu &middot; %s</span>%s", (unsigned long long)t->id,
                        dagger__trace_fmt_dur(t->work, a),
                        j + 1 < ncp ? "<span class=\"arrow\">&rarr;</span>" : "");
            }
            fputs("</div>\n", f);
            free(chain);
        }
    }
    fputs("</section>\n", f);

    /* Errors, grouped by root cause: a failed task whose failure came from a failed input
     * (DAGGER_EUPSTREAM) belongs to the group of that input's root. */
    fputs("<section><h2>Errors</h2>\n", f);
    size_t nt = m->ntasks, nerr = 0, ngroups = 0;
    uint32_t *up = malloc((nt + 1) * sizeof *up), *cnt = calloc(nt + 1, sizeof *cnt);
    if (!up || !cnt) {
        free(up);
        free(cnt);
        free(oncp);
        return DAGGER_ENOMEM;
    }
#define FAILED(t) (((t)->state & DTR_ST_FINISHED) && (t)->rc != 0)
    for (size_t i = 0; i < nt; i++)
        up[i] = UINT32_MAX;
    for (size_t i = 0; i < m->nedges; i++) {
        const struct dtr_edge *e = &m->edges[i];
        const struct dtr_task *to = &m->tasks[e->to];
        if (up[e->to] == UINT32_MAX && FAILED(to) && to->rc == DAGGER_EUPSTREAM &&
            FAILED(&m->tasks[e->from]))
            up[e->to] = e->from;
    }
    for (size_t i = 0; i < nt; i++) {
        if (!FAILED(&m->tasks[i]))
            continue;
        size_t r = i;
        for (size_t hops = 0; up[r] != UINT32_MAX && hops < nt; hops++)
            r = up[r];
        if (!cnt[r]++)
            ngroups++;
        nerr++;
    }
    if (nerr) {
        /* Groups, biggest first. */
        uint32_t *order = malloc(ngroups * sizeof *order);
        size_t no = 0;
        for (size_t i = 0; order && i < nt; i++)
            if (cnt[i])
                order[no++] = (uint32_t)i;
        for (size_t i = 1; order && i < no; i++) {
            uint32_t x = order[i];
            size_t j = i;
            for (; j > 0 && cnt[order[j - 1]] < cnt[x]; j--)
                order[j] = order[j - 1];
            order[j] = x;
        }
        fprintf(f,
                "<p class=\"hint\">%zu failed task%s from %zu root cause%s; a task that failed "
                "because an input failed counts under the input's root.</p>\n",
                nerr, nerr == 1 ? "" : "s", ngroups, ngroups == 1 ? "" : "s");
        fputs("<table id=\"errors\" class=\"sortable\"><thead><tr><th>root task</th>"
              "<th class=\"l\">function</th><th class=\"l\">code</th>"
              "<th class=\"l\">message</th><th>failed tasks</th></tr></thead><tbody>\n",
              f);
        for (size_t g = 0; order && g < no && g < MAX_ERRORS; g++) {
            const struct dtr_task *t = &m->tasks[order[g]];
            fprintf(f, "<tr><td data-v=\"%llu\">#%llu</td><td class=\"l\">",
                    (unsigned long long)t->id, (unsigned long long)t->id);
            dagger__trace_put_html(f, dagger__trace_task_name(m, t));
            fprintf(f, "</td><td class=\"l\">%s</td><td class=\"msg\">",
                    dagger__trace_err_name(t->rc));
            dagger__trace_put_html(f, t->err != DTR_NOSTR ? dagger__trace_str(m, t->err) : "");
            fprintf(f, "</td><td>%u</td></tr>\n", cnt[order[g]]);
        }
        fputs("</tbody></table>\n", f);
        if (no > MAX_ERRORS)
            fprintf(f, "<p class=\"hint\">... and %zu more root causes.</p>\n", no - MAX_ERRORS);
        free(order);
    } else {
        fputs("<p class=\"ok\">No task failed.</p>\n", f);
    }
#undef FAILED
    free(up);
    free(cnt);
    fputs("</section>\n", f);

    fputs("<footer>generated by dagger &middot; open the .json of the same run in "
          "ui.perfetto.dev for every event</footer>\n</main>\n<div id=\"tip\"></div>\n",
          f);
    fputs("<script type=\"application/json\" id=\"fns-data\">[", f);
    for (size_t i = 0; i < m->nfns; i++) {
        fputs(i ? ",{\"name\":" : "{\"name\":", f);
        put_js(f, dagger__trace_str(m, m->fns[i].name));
        fputc('}', f);
    }
    fputs("]</script>\n<script>\n", f);
    fputs(JS, f);
    fputs("</script>\n</body></html>\n", f);
    free(oncp);
    return ferror(f) ? DAGGER_EIO : 0;
}
