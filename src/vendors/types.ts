/** The shape of vendors/<id>/vendor.json. Everything about a vendor is data of this shape. */
export type FileFormat = 'text' | 'xml';
export type FileScope = 'common' | 'model' | 'device';

export interface VendorModel {
  /** the vendor's product name without the vendor prefix: T46S, VVX400, D785, 6867i */
  id: string;
  /** other spellings seen in User-Agents or DHCP (VVX_400, SIP-T46S) */
  aliases?: string[];
  /** a model code used in file names, as {code} in a file name pattern (e.g. y{code}.cfg) */
  code?: string;
  /**
   * named model codes, as {code:<name>} in a file name pattern: for a vendor whose models ask for
   * more than one per-model file (a settings file and a firmware descriptor), or whose model
   * families ask for differently named files. A model without the named code has no such file.
   * Letters, digits, '.', '_' and '-' (e.g. "f0X4hw1.100"). The view has them as model.codes.<name>.
   */
  codes?: Record<string, string>;
  lines: number;
  keys: number;
  /** expansion modules this model takes, by id */
  expansion?: string[];
  /** template settings this model has no parameter for, as in VendorData.unsupported */
  unsupported?: string[];
  /** line/function keys shown per page, where the vendor numbers keys per page: keys get page and pageIndex */
  keysPerPage?: number;
  /** which of the vendor's parameter tables (`params`) this model uses; default "default" */
  params?: string;
  /** a DECT base: how many handsets it takes. On a base, line N is handset N (lines ≤ handsets). */
  handsets?: number;
  /** the model family (a key of VendorData.families) whose templates and value maps this model uses */
  family?: string;
  description?: string;
}


/**
 * A family of models of one vendor whose firmware reads another format: its own templates for
 * some files (file template name -> template name) and its own value maps (a map named here
 * replaces the vendor's map of that name).
 */
export interface VendorFamily {
  description?: string;
  templates?: Record<string, string>;
  maps?: Record<string, Record<string, string>>;
  /** template keys ("section.key" of OPTIONAL_KEYS) this family has no setting for, in addition to the vendor's "unsupported" */
  unsupported?: string[];
  /** line ids zero-padded to this many digits (lineId in the view), e.g. 5 for 00001 */
  lineIdWidth?: number;
}

export interface VendorFile {
  /** name pattern: literal text with {mac} (lower-case hex), {MAC} (upper-case hex), {code} (model code: letters, digits, -) */
  name: string;
  template: string;
  format: FileFormat;
  /** true when the rendered file carries a SIP password, admin password or another secret */
  secrets: boolean;
  /** line ends of the rendered file: lf (default) or crlf (firmware that insists on CR LF) */
  lineEnding?: 'lf' | 'crlf';
  /** only models of these families ask for this file (default: every model) */
  families?: string[];
  description?: string;
}

/**
 * Numbered parameter names for the entries of a list (lines, keys ...), for vendors whose
 * settings are numbers that change with the line or key index (P47 for account 1, P402 for
 * account 2). A range covers indexes `from`..`to`; a field's name is prefix + number, where the
 * number is `base + step * (index - from)`. A field is a base (the range's step applies) or
 * [base, step].
 */
export interface ParamRange {
  from: number;
  to: number;
  /** default 1 */
  step?: number;
  /** printed before the number; default "" */
  prefix?: string;
  /** only for expansion-module keys: the module number this range is for; default 1 */
  module?: number;
  /** keys only: the value map (maps.<name>) of the key-type codes in this range, where they differ from keyType */
  typeMap?: string;
  /** keys only: the vendor drops every key after a gap, so unset keys of this range up to the last set key are written as type none */
  fill?: boolean;
  fields: Record<string, number | [number, number]>;
}

export const PARAM_LISTS = ['lines', 'keys', 'moduleKeys', 'progkeys', 'paging'] as const;
export type ParamList = (typeof PARAM_LISTS)[number];
export type ParamTable = Partial<Record<ParamList, ParamRange[]>> & {
  /** template keys ("section.key" of OPTIONAL_KEYS) this model family has no setting for, beside the vendor's `unsupported` */
  unsupported?: string[];
};

export interface RefusedFile {
  name: string;
  why: string;
  source?: string;
}

export interface VendorClassPattern {
  match: 'exact' | 'prefix' | 'suffix' | 'regex';
  value: string;
  source: string;
}

export interface UserAgentPattern {
  /** a regular expression with named groups model, version and (optional) mac */
  pattern: string;
  source: string;
}

export interface DhcpAnswer {
  code: number;
  /** url = the provisioning URL; host = the server host; ip = the server's IP; sub = vendor sub-options (43) */
  value: 'url' | 'host' | 'ip' | 'sub';
  suboption?: number;
  /** text appended to the URL of a 'url' answer, e.g. a file name with a macro the phone expands itself ($mac.cfg) */
  append?: string;
}

export interface VendorData {
  id: string;
  name: string;
  description?: string;
  ouis: string[];
  vendorClasses: VendorClassPattern[];
  userAgents: UserAgentPattern[];
  models: VendorModel[];
  expansionModules?: { id: string; keys: number }[];
  files: VendorFile[];
  /**
   * value maps from vendor-neutral values to the vendor's own: bool, transport, keyType (and
   * progkeyType / moduleKeyType where those keys use other codes), language, toneCountry,
   * cidSource, dst, scheme (tftp/http/https), timeZone (by IANA name), utcOffset (by +H[:MM])
   */
  maps: Record<string, Record<string, string>>;
  /**
   * Where older firmware reads other parameter names: each variant sets `firmwareVariant.<flag>`
   * in the view for a version below `below`, compared number by number from the version's part
   * `part` (0-based: a version 66.86.0.15 whose first number names the hardware family compares from part 1). The
   * version is the template's firmware_version, else the one the phone reported.
   */
  firmwareVariants?: { flag: string; below: string; part?: number; source: string }[];
  /** named parameter tables (see ParamRange); a model picks one by `params`, else "default" */
  params?: Record<string, ParamTable>;
  resync: { event: string; rebootEvent?: string };
  /**
   * firmware facts: upgradeLimit, how long a phone of this vendor may take to fetch, flash and
   * come back after it was pointed at a new image (a duration: 900, 15m); default [firmware] upgrade_limit
   */
  firmware?: { upgradeLimit?: string; source?: string };
  /** model families with their own templates and maps (VendorModel.family) */
  families?: Record<string, VendorFamily>;
  /** line ids zero-padded to this many digits (lineId in the view) */
  lineIdWidth?: number;
  dhcp?: { answers: DhcpAnswer[] };
  /**
   * Files the firmware asks for that aps does not answer on purpose (a 404 is what the phone
   * should get), each with the reason; the name pattern takes the placeholders of files[].name.
   */
  refused?: RefusedFile[];
  /**
   * template keys the vendor has no setting for, left out with the render warning
   * `has no "<key>" key: left out`: a key of OPTIONAL_KEYS (with its own "is set" rule), any other
   * "<section>.<key>" as in the ini file (phone.tone_country; phone.tones for the tone_* keys: set
   * when it differs from the built-in default), or a whole "<section>" (progkeys, paging)
   */
  unsupported?: string[];
  /** facts with sources: key -> source tag; and facts not confirmed */
  sources?: Record<string, string>;
  unconfirmed?: string[];
}
