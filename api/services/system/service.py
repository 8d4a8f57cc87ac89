"""SettingsService: the settings in force, which of them the Settings page may change, and changing them.

    view = service.view()                  # {settings, editable, locked: {field: ODEO_VAR}, file}
    service.update({'retry_limit': 5})     # checked, written to the settings file, in force at once

A change is checked first (SettingsError names the field: 422), then written into the settings file the
studio reads at start (`<data>/settings.toml`, or ODEO_SETTINGS) keeping its comments, and then set on the
one Settings object every service reads its values from, so it applies without a restart. A field the
environment sets (ODEO_<NAME>) is refused: the file's value would be overridden at the next start.
"""

import threading

from ...settings import EDITABLE, LIMITS, SettingsError, check_changes, locked_fields, public_view, settings_file, \
    write_settings_file
from ..errors import Conflict, Invalid
from ..records import clean_temp_files


class SettingsService:
    def __init__(self, settings, models, env=None):
        self.settings = settings
        self.models = models                # the model catalog scans settings.all_model_roots
        self.env = env
        self._lock = threading.Lock()
        path = settings_file(settings, env)
        clean_temp_files(path.parent, path.name)        # a crash mid-save leaves its temp file

    def view(self):
        s = self.settings
        return {'settings': public_view(s), 'file': str(settings_file(s, self.env)),
                'editable': {name: self._value(name) for name in EDITABLE},
                'limits': {k: list(v) for k, v in LIMITS.items()},
                'locked': {k: v for k, v in locked_fields(self.env).items() if k in EDITABLE}}

    def _value(self, name):
        v = getattr(self.settings, name)
        return list(v) if isinstance(v, tuple) else v

    def update(self, changes):
        try:
            checked = check_changes(changes)
        except SettingsError as e:
            raise Invalid(str(e), field=e.field) from None
        locked = locked_fields(self.env)
        for name in checked:
            if name in locked:
                raise Conflict(f'setting {name} is set by the environment variable {locked[name]}: change it there '
                               '(a value in the settings file would not apply)', field=name)
        with self._lock:
            path = settings_file(self.settings, self.env)
            try:
                write_settings_file(path, checked)
            except SettingsError as e:
                raise Invalid(f'{e}; fix the file by hand first', field='settings') from None
            for name, value in checked.items():     # the one Settings object every service reads from
                setattr(self.settings, name, value)
            if 'model_roots' in checked:
                self.models.roots = [r for r in self.settings.all_model_roots]
                self.models.refresh()
        return self.view()

