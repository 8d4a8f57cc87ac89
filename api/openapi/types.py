"""The building blocks of the OpenAPI component schemas: scalar types and small constructors."""

NUM = {'type': 'number'}
INT = {'type': 'integer'}
STR = {'type': 'string'}
BOOL = {'type': 'boolean'}
ANY = {}


def obj(props, required=(), nullable=False):
    out = {'type': 'object', 'properties': props}
    if required:
        out['required'] = list(required)
    if nullable:
        out['nullable'] = True
    return out


def arr(items):
    return {'type': 'array', 'items': items}


def ref(name):
    return {'$ref': f'#/components/schemas/{name}'}


def opt(schema):
    return {**schema, 'nullable': True}
