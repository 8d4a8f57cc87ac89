"""The studio's ES modules (api/static/js) form an acyclic import graph with app.js, the shell, at the
top: areas reach the router through router.js, and no module imports app.js."""
import re
from pathlib import Path

JS = Path(__file__).resolve().parents[2] / 'api' / 'static' / 'js'

# static `import ... from './x.js'`, bare `import './x.js'`, `export ... from './x.js'` and dynamic
# `import('./x.js')`; only relative specifiers name project modules
IMPORT = re.compile(
    r"""(?:^\s*(?:import|export)\b[^'";]*?(?:\bfrom\s*)?|\bimport\s*\(\s*)['"](\.{1,2}/[^'"]+)['"]""",
    re.M)


def module_graph():
    graph = {}
    for path in sorted(JS.rglob('*.js')):
        deps = set()
        for spec in IMPORT.findall(path.read_text(encoding='utf-8')):
            target = (path.parent / spec).resolve()
            assert target.is_file(), f'{path.relative_to(JS)} imports {spec}, which does not exist'
            deps.add(target.relative_to(JS).as_posix())
        graph[path.relative_to(JS).as_posix()] = deps
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}  # module -> 'open' while on the DFS stack, 'done' after
    stack = []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 'open':
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_parser_sees_the_imports():
    graph = module_graph()
    assert {'training.js', 'data.js', 'inference.js', 'gpus.js', 'router.js', 'ui.js'} <= graph['app.js']
    assert 'router.js' in graph['training/task.js']
    assert find_cycle({'a.js': {'b.js'}, 'b.js': {'c.js'}, 'c.js': {'a.js'}}) == ['a.js', 'b.js', 'c.js', 'a.js']
    assert find_cycle({'a.js': {'b.js'}, 'b.js': set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(module_graph())
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_nothing_imports_the_shell():
    importers = sorted(m for m, deps in module_graph().items() if 'app.js' in deps)
    assert importers == [], f'app.js is the entry point; import router.js instead: {importers}'
